import XCTest
import Synchronization
import TensorCore
@testable import Optimizers

private final class Counter: Sendable {
    let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

final class OptimizerTests: XCTestCase {
    private func address(_ t: Tensor) -> UInt { UInt(bitPattern: t.storageBlock.pointer) }

    func testStepUpdatesInPlaceAndKeepsTheLeafNodeAndHooks() throws {
        var params = [try Tensor([1.0, -2.0, 3.0], shape: [3]).requiringGrad()]
        let node = params[0].gradNode!
        let counter = Counter()
        params[0].registerHook { _ in counter.increment(); return nil }
        let posts = Counter()
        params[0].registerPostAccumulateGradHook { _ in posts.increment() }
        var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: params)

        (params[0] * params[0]).sum().backward()              // grad = 2p
        XCTAssertEqual(counter.count, 1)
        let storage = address(params[0])
        opt.step(&params)
        XCTAssertEqual(params[0].doubles(), [0.8, -1.6, 2.4])
        XCTAssertTrue(params[0].gradNode === node, "the parameter keeps its leaf GradNode")
        XCTAssertTrue(params[0].requiresGrad && params[0].isLeaf)
        XCTAssertEqual(address(params[0]), storage, "the update was written into the parameter's storage")

        opt.zeroGrad(params)
        XCTAssertNil(params[0].grad)
        (params[0] * params[0]).sum().backward()
        XCTAssertEqual(counter.count, 2, "the gradient hook survived the update")
        XCTAssertEqual(posts.count, 2, "the post-accumulate hook survived the update")
        XCTAssertEqual(params[0].grad!.doubles(), [1.6, -3.2, 4.8])
    }

    func testStateSlotsAreUpdatedInPlace() throws {
        for (make, slots) in [({ try sgd(lr: 0.1, momentum: 0.9) }, ["momentum"]),
                              ({ try sgd(lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1) }, ["momentum"]),
                              ({ try adamW(lr: 0.01) }, ["exp_avg", "exp_avg_sq"])] as [(() throws -> Chain, [String])] {
            var params = [Tensor.zeros([4, 3]).requiringGrad(), Tensor.zeros([5]).requiringGrad()]
            var opt = Optimizer(try make(), params: params)
            let before = slots.map { name in params.indices.map { address(opt.state.slot(name, param: $0)!) } }
            for k in 0..<3 {
                for (i, p) in params.enumerated() {
                    p.grad = try Tensor(pseudoGrad(step: k, param: i, count: p.count), shape: p.shape).to(.float32)
                }
                if k == 2 { params[1].grad = nil }   // the subset path moves slots out and back
                opt.step(&params)
                // Checked after every step: a copy would get a new address while the old block is alive.
                let after = slots.map { name in params.indices.map { address(opt.state.slot(name, param: $0)!) } }
                XCTAssertEqual(before, after, "\(slots) step \(k)")
            }
            XCTAssertNotEqual(opt.state.slot(slots[0], param: 0)!.doubles(), Array(repeating: 0, count: 12))
        }
    }

    func testStepOnASharedParameterCopiesInsteadOfChangingOtherCopies() throws {
        let original = try Tensor([1.0, 2.0], shape: [2]).requiringGrad()
        var params = [original]
        var opt = Optimizer(try sgd(lr: 1), params: params)
        params[0].grad = try Tensor([1.0, 1.0], shape: [2])
        opt.step(&params)
        XCTAssertEqual(params[0].doubles(), [0, 1])
        XCTAssertEqual(original.doubles(), [1, 2], "value semantics: the other copy is unchanged")
        XCTAssertTrue(params[0].gradNode === original.gradNode)
    }

    func testParametersWithoutGradientsAreSkipped() throws {
        var params = [try Tensor([1.0, 1.0], shape: [2]).requiringGrad(),
                      try Tensor([5.0], shape: [1]).requiringGrad(),
                      try Tensor([2.0, 2.0], shape: [2]).requiringGrad()]
        var opt = Optimizer(try sgd(lr: 0.5, momentum: 0.5, weightDecay: 0.1), params: params)
        params[0].grad = try Tensor([1.0, -1.0], shape: [2])
        params[2].grad = try Tensor([2.0, 0.0], shape: [2])
        opt.step(&params)
        XCTAssertEqual(params[1].doubles(), [5], "no gradient: untouched (weight decay not applied either)")
        XCTAssertEqual(opt.state.slot("momentum", param: 1)!.doubles(), [0])
        XCTAssertEqual(params[0].doubles()[0], 1 - 0.5 * (1 + 0.1), accuracy: 1e-15)
        XCTAssertEqual(params[2].doubles()[1], 2 - 0.5 * 0.2, accuracy: 1e-15)
        XCTAssertEqual(opt.state.slot("momentum", param: 2)!.doubles()[0], 2.2, accuracy: 1e-15)
        XCTAssertEqual(opt.stepCount, 1)
        // No gradients at all: nothing happens, no step counted.
        opt.zeroGrad(params)
        let before = params.map { $0.doubles() }
        opt.step(&params)
        XCTAssertEqual(params.map { $0.doubles() }, before)
        XCTAssertEqual(opt.stepCount, 1)
        // Now parameter 1 gets a gradient: its (zero) buffer starts as in PyTorch (buf = g).
        params[1].grad = try Tensor([4.0], shape: [1])
        opt.step(&params)
        XCTAssertEqual(params[1].doubles()[0], 5 - 0.5 * (4 + 0.5), accuracy: 1e-15)
        XCTAssertEqual(opt.stepCount, 2)
    }

    func testOptimizerStateIsChargedToTheOptimizerStateTag() throws {
        let base = Memory.stats().current(.optimizerState)
        do {
            var params = [Tensor.zeros([10, 10]).requiringGrad(), Tensor.zeros([7], dtype: .float64).requiringGrad()]
            var opt = Optimizer(try adam(lr: 0.01), params: params)
            let stateBytes = 2 * (100 * 4 + 7 * 8)
            XCTAssertEqual(Memory.stats().current(.optimizerState) - base, stateBytes)
            for k in 0..<3 {
                for (i, p) in params.enumerated() {
                    p.grad = try Tensor(pseudoGrad(step: k, param: i, count: p.count), shape: p.shape).to(p.dtype)
                }
                opt.step(&params)
                XCTAssertEqual(Memory.stats().current(.optimizerState) - base, stateBytes, "step \(k): temporaries are freed, the state stays")
            }
            try opt.loadStateDict(opt.stateDict())
            XCTAssertEqual(Memory.stats().current(.optimizerState) - base, stateBytes, "loaded state is charged to optimizerState")
            XCTAssertEqual(opt.state.slot("exp_avg", param: 0)!.storageBlock.tag, .optimizerState)
            XCTAssertEqual(params[0].storageBlock.tag, .other, "the parameter's storage is not retagged")
        }
        XCTAssertEqual(Memory.stats().current(.optimizerState) - base, 0, "freed with the optimizer")
    }

    /// min_w mean((A w - b)^2) for a well-conditioned A; returns (initial loss, final loss).
    private func leastSquares(_ transformation: any GradientTransformation, steps: Int) -> (Double, Double) {
        let gen = Generator(seed: 42)
        let a = Tensor.randn([32, 6], dtype: .float32, generator: gen)
        let wTrue = Tensor.randn([6, 1], dtype: .float32, generator: gen)
        let b = a.matmul(wTrue)
        var params = [Tensor.zeros([6, 1]).requiringGrad()]
        var opt = Optimizer(transformation, params: params)
        func loss() -> Tensor { let r = a.matmul(params[0]) - b; return (r * r).mean() }
        let initial = noGrad { loss() }.item()
        for _ in 0..<steps {
            opt.zeroGrad(params)
            loss().backward()
            opt.step(&params)
        }
        return (initial, noGrad { loss() }.item())
    }

    func testLeastSquaresLossFallsHundredfold() throws {
        let (s0, s1) = leastSquares(try sgd(lr: 0.05, momentum: 0.9), steps: 150)
        XCTAssertLessThan(s1, s0 / 100, "sgd momentum: \(s0) -> \(s1)")
        let (n0, n1) = leastSquares(try sgd(lr: 0.05, momentum: 0.9, nesterov: true), steps: 150)
        XCTAssertLessThan(n1, n0 / 100, "sgd nesterov: \(n0) -> \(n1)")
        let (a0, a1) = leastSquares(try adam(lr: 0.05), steps: 300)
        XCTAssertLessThan(a1, a0 / 100, "adam: \(a0) -> \(a1)")
        let (w0, w1) = leastSquares(try adamW(lr: try .oneCycle(maxLR: 0.1, totalSteps: 300), weightDecay: 1e-4), steps: 300)
        XCTAssertLessThan(w1, w0 / 100, "adamW one-cycle: \(w0) -> \(w1)")
    }

    func testLearningRateReportsTheScheduleAtTheNextStep() throws {
        var params = [Tensor.zeros([2]).requiringGrad()]
        var opt = Optimizer(chain(try clipByGlobalNorm(1), try sgd(lr: try .stepDecay(initial: 0.4, stepSize: 1, gamma: 0.5))), params: params)
        XCTAssertEqual(opt.learningRate, 0.4)
        params[0].grad = Tensor.ones([2])
        opt.step(&params)
        XCTAssertEqual(opt.learningRate, 0.2)
        XCTAssertNil(Optimizer(try clipByGlobalNorm(1), params: params).learningRate)
    }

    func testFloat16ParametersKeepTheirDtypeAndNode() throws {
        var params = [try Tensor([1.0, 2.0], shape: [2]).to(.float16).detached().requiringGrad()]
        let node = params[0].gradNode
        var opt = Optimizer(try adam(lr: 0.25), params: params)
        XCTAssertEqual(opt.state.slot("exp_avg", param: 0)!.dtype, .float16)
        params[0].grad = try Tensor([1.0, -1.0], shape: [2]).to(.float16)
        opt.step(&params)
        XCTAssertEqual(params[0].dtype, .float16)
        XCTAssertTrue(params[0].gradNode === node)
        // Float16 rounds every intermediate (and eps = 1e-8 underflows to 0 in Float16).
        XCTAssertEqual(params[0].doubles()[0], 0.75, accuracy: 2e-3)
        XCTAssertEqual(params[0].doubles()[1], 2.25, accuracy: 2e-3)
    }
}
