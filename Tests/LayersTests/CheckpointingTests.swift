import XCTest
import Layers
import TensorCore

/// Gradient checkpointing: gradients equal the plain computation bitwise (Loom's CPU
/// kernels are deterministic for a fixed thread count), dropout replays its mask, BatchNorm
/// updates running statistics once, and intermediates are really dropped.
final class CheckpointingTests: XCTestCase {
    /// conv-BN-ReLU-dropout blocks and a head: the layers checkpointing must get right.
    func makeNet(seed: UInt64, depth: Int = 6, dropout: Double = 0.3) -> Sequential {
        Generator.manualSeed(seed)
        var layers: [Module] = [Conv2d(1, 4, kernel: 3, padding: 1)]
        for _ in 0..<depth {
            layers += [Conv2d(4, 4, kernel: 3, padding: 1, bias: false), BatchNorm2d(4), ReLU(), Dropout(dropout)]
        }
        layers += [Flatten(), Linear(4 * 6 * 6, 3)]
        return Sequential(layers)
    }

    /// One training step's gradients (by parameter name), running stats and the loss.
    func step(_ net: Sequential, x: Tensor, seed: UInt64) -> (grads: [String: [Float]], buffers: [String: [Float]], loss: Float, rngAfter: RNGState) {
        Generator.manualSeed(seed)
        let loss = (net(x) * net(x).detached()).mean()  // two forwards: BN/dropout state advance twice
        loss.backward()
        var grads: [String: [Float]] = [:]
        for (n, p) in net.namedParameters() { grads[n] = p.grad!.scalars(as: Float.self) }
        var buffers: [String: [Float]] = [:]
        for (n, b) in net.namedBuffers() where b.value.dtype == .float32 { buffers[n] = b.value.scalars(as: Float.self) }
        net.zeroGrad()
        return (grads, buffers, loss.scalars(as: Float.self)[0], Generator.default.currentState)
    }

    func testSegmentsGiveBitwiseEqualGradientsDropoutMasksAndRunningStats() throws {
        let x = Tensor.randn([5, 1, 6, 6], generator: Generator(seed: 3))
        let plain = step(makeNet(seed: 1), x: x, seed: 42)
        for planText in ["sqrt", "every", "mixed"] {
            let net = makeNet(seed: 1)
            let n = net.layers.count
            switch planText {
            case "sqrt": net.checkpointPlan = CheckpointPlanner.sqrtPlan(layers: n)
            case "every": net.checkpointPlan = try CheckpointPlan(segments: (0..<n).map { .init($0..<($0 + 1), recompute: true) })
            default: net.checkpointPlan = try CheckpointPlan(segments: [.init(0..<3, recompute: false), .init(3..<11, recompute: true),
                                                                      .init(11..<n, recompute: true)])
            }
            let ck = step(net, x: x, seed: 42)
            XCTAssertEqual(ck.loss, plain.loss, "\(planText): loss")
            XCTAssertEqual(Set(ck.grads.keys), Set(plain.grads.keys))
            for (k, g) in plain.grads { XCTAssertEqual(ck.grads[k]!, g, "\(planText): gradient of \(k) differs") }
            // Running statistics (and num_batches_tracked) advanced by the two forwards only.
            for (k, b) in plain.buffers { XCTAssertEqual(ck.buffers[k]!, b, "\(planText): buffer \(k) differs") }
            // The generator ends where it would have: recomputation restored it.
            XCTAssertEqual(ck.rngAfter, plain.rngAfter, "\(planText): generator state after the step")
        }
    }

    func testWithoutRNGPreservationDropoutMasksDiffer() {
        // The classic bug, shown: recomputing without restoring the generator draws new masks.
        let x = Tensor.randn([4, 1, 6, 6], generator: Generator(seed: 5))
        let ref = makeNet(seed: 2, depth: 2, dropout: 0.5)
        Generator.manualSeed(9)
        ref(x).sum().backward()
        let g0 = ref.namedParameters()[0].1.grad!.scalars(as: Float.self)
        let net = makeNet(seed: 2, depth: 2, dropout: 0.5)
        Generator.manualSeed(9)
        checkpoint(net, x, preserveRNGState: false).sum().backward()
        let g1 = net.namedParameters()[0].1.grad!.scalars(as: Float.self)
        XCTAssertNotEqual(g0, g1)
    }

    func testFirstSegmentParametersGetGradientsWhenTheInputNeedsNone() {
        let net = makeNet(seed: 4, depth: 1, dropout: 0)
        let x = Tensor.randn([2, 1, 6, 6], generator: Generator(seed: 1))
        XCTAssertFalse(x.requiresGrad)
        checkpoint(net, x).sum().backward()
        for (name, p) in net.namedParameters() { XCTAssertNotNil(p.grad, "\(name) got no gradient") }
    }

    func testCheckpointDropsIntermediates() {
        // 8 conv layers on [8, 8, 16, 16] Float32 (8 KiB per sample per layer): without
        // checkpointing the graph keeps every layer's output; with one checkpointed segment
        // only the input and the output survive the forward pass.
        Generator.manualSeed(0)
        let layers: [Module] = (0..<8).flatMap { _ in [Conv2d(8, 8, kernel: 3, padding: 1) as Module, ReLU()] }
        let x = Tensor.randn([8, 8, 16, 16])
        let act = 8 * 8 * 16 * 16 * 4
        func kept(_ body: () -> Tensor) -> Int {
            let before = Memory.stats().current
            let y = body()
            let after = Memory.stats().current
            withExtendedLifetime(y) {}
            return after - before
        }
        let plain = kept { Sequential(layers)(x) }
        let ck = kept { checkpointLayers(layers, x) }
        XCTAssertGreaterThanOrEqual(plain, 8 * act, "plain graph keeps at least one activation per conv")
        XCTAssertLessThanOrEqual(ck, act + 4096, "checkpointed segment keeps only its output")
    }

    func testNestedModelGradientsMatchOnAFunction() {
        // Closure form: gradients of all inputs (including a captured-as-input weight) match.
        let gen = Generator(seed: 8)
        let a = Tensor.randn([3, 4], dtype: .float64, generator: gen), w = Tensor.randn([4, 4], dtype: .float64, generator: gen)
        let f: ([Tensor]) -> Tensor = { xs in (xs[0].matmul(xs[1]).relu().matmul(xs[1])).tanh() }
        let (v0, g0) = valueAndGrad(of: [a, w]) { f($0).sum() }
        let (v1, g1) = valueAndGrad(of: [a, w]) { checkpoint($0, f).sum() }
        XCTAssertEqual(v0.doubles(), v1.doubles())
        XCTAssertEqual(g0[0].doubles(), g1[0].doubles())
        XCTAssertEqual(g0[1].doubles(), g1[1].doubles())
    }
}

/// The planner: sqrt segments, the memory model, and the budget DP against brute force.
final class CheckpointPlannerTests: XCTestCase {
    func testSqrtPlanSegments() {
        XCTAssertEqual(CheckpointPlanner.sqrtPlan(layers: 0).segments, [])
        XCTAssertEqual(CheckpointPlanner.sqrtPlan(layers: 1).description, "s[0..<1]")
        XCTAssertEqual(CheckpointPlanner.sqrtPlan(layers: 10).description, "r[0..<4] r[4..<8] s[8..<10]")
        XCTAssertEqual(CheckpointPlanner.sqrtPlan(layers: 16).description, "r[0..<4] r[4..<8] r[8..<12] s[12..<16]")
    }

    func testPlanValidationAndParsing() throws {
        XCTAssertThrowsError(try CheckpointPlan(segments: [.init(0..<2, recompute: true), .init(3..<4, recompute: false)]))
        XCTAssertThrowsError(try CheckpointPlan(segments: [.init(1..<2, recompute: true)]))
        XCTAssertEqual(try CheckpointPolicy(parsing: "budget:64M"), .budget(bytes: 64 << 20))
        XCTAssertEqual(try CheckpointPolicy(parsing: "sqrt"), .sqrt)
        XCTAssertThrowsError(try CheckpointPolicy(parsing: "budget:lots")) { e in
            XCTAssertTrue("\(e)".contains("'budget:lots'"), "\(e)")
        }
    }

    func testPlannedPeakByHand() throws {
        // Three layers saving 10, 20, 30 bytes with outputs 1, 2, 3.
        let costs = [LayerCost(savedBytes: 10, outputBytes: 1, forwardCost: 1), LayerCost(savedBytes: 20, outputBytes: 2, forwardCost: 2),
                     LayerCost(savedBytes: 30, outputBytes: 3, forwardCost: 3)]
        XCTAssertEqual(CheckpointPlanner.plannedPeak(.none(layers: 3), costs: costs), 60)
        // r[0..<2] s[2..<3]: kept 2 + 30 = 32; recomputing segment 0 peaks at 2 + (30 - 2) = 30.
        let p = try CheckpointPlan(segments: [.init(0..<2, recompute: true), .init(2..<3, recompute: false)])
        XCTAssertEqual(CheckpointPlanner.plannedPeak(p, costs: costs), 32)
        XCTAssertEqual(CheckpointPlanner.recomputeCost(p, costs: costs), 3)
    }

    /// All plans of n layers: every partition into segments, each stored or recomputed.
    func allPlans(_ n: Int) -> [CheckpointPlan] {
        var out: [CheckpointPlan] = []
        func go(_ start: Int, _ acc: [CheckpointPlan.Segment]) {
            if start == n { out.append(try! CheckpointPlan(segments: acc)); return }
            for end in (start + 1)...n {
                go(end, acc + [.init(start..<end, recompute: true)])
                go(end, acc + [.init(start..<end, recompute: false)])
            }
        }
        go(0, [])
        return out
    }

    func testBudgetPlanMatchesBruteForce() throws {
        for trial in 0..<30 {
            let rng = Generator(seed: UInt64(11 + trial))
            let n = 1 + trial % 7
            let r = Tensor.rand([n, 3], low: 0, high: 1, dtype: .float64, generator: rng).doubles()
            let costs = (0..<n).map { i in
                LayerCost(savedBytes: 1000 + Int(r[3 * i] * 9000), outputBytes: 200 + Int(r[3 * i + 1] * 800), forwardCost: 0.1 + r[3 * i + 2])
            }
            let plans = allPlans(n)
            let peaks = plans.map { CheckpointPlanner.plannedPeak($0, costs: costs) }
            let minPeak = peaks.min()!, maxPeak = peaks.max()!
            for budget in [minPeak, (minPeak + maxPeak) / 2, maxPeak] {
                // The exact optimum among plans that fit.
                let best = zip(plans, peaks).filter { $0.1 <= budget }.map { CheckpointPlanner.recomputeCost($0.0, costs: costs) }.min()!
                // Fine units: rounding up may cost a little optimality, never the budget.
                let plan = try CheckpointPlanner.budgetPlan(costs, budget: budget, units: 1 << 16)
                XCTAssertLessThanOrEqual(CheckpointPlanner.plannedPeak(plan, costs: costs), budget)
                XCTAssertEqual(CheckpointPlanner.recomputeCost(plan, costs: costs), best, accuracy: 1e-9, "trial \(trial) budget \(budget): \(plan)")
            }
            XCTAssertThrowsError(try CheckpointPlanner.budgetPlan(costs, budget: minPeak - 1, units: 1 << 16)) { e in
                XCTAssertTrue("\(e)".contains("\(minPeak - 1) bytes"), "\(e)")
            }
        }
    }
}
