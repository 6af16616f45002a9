import XCTest
import TensorCore
@testable import Optimizers

final class OptimizerStateTests: XCTestCase {
    private let shapes: [[Int]] = [[3, 2], [5], []]

    private func freshParams(_ dtype: DType = .float32) -> [Tensor] {
        makeParams(shapes.enumerated().map { pseudoParam($0.offset, count: elementCount($0.element)) }, shapes: shapes, dtype: dtype)
    }

    private func setGrads(_ params: [Tensor], step k: Int) {
        for (i, p) in params.enumerated() {
            p.grad = try! Tensor(pseudoGrad(step: k, param: i, count: p.count), shape: p.shape).to(p.dtype)
        }
    }

    private func bits(_ t: Tensor) -> [UInt32] { t.scalars(as: Float.self).map(\.bitPattern) }

    func testDictionaryKeysShapesAndStep() throws {
        let params = freshParams()
        var opt = Optimizer(try adam(lr: 0.01), params: params)
        var ps = params
        setGrads(ps, step: 0)
        opt.step(&ps)
        let d = opt.stateDict()
        XCTAssertEqual(Set(d.keys), ["step", "0.exp_avg", "0.exp_avg_sq", "1.exp_avg", "1.exp_avg_sq", "2.exp_avg", "2.exp_avg_sq"])
        XCTAssertEqual(d["1.exp_avg"]!.shape, [5])
        XCTAssertEqual(d["2.exp_avg_sq"]!.shape, [])
        XCTAssertEqual(d["0.exp_avg"]!.dtype, .float32)
        XCTAssertEqual(d["step"]!.dtype, .int64)
        XCTAssertEqual(d["step"]!.shape, [])
        XCTAssertEqual(d["step"]!.item(), 1)
        XCTAssertEqual(OptimizerState.key(param: 3, slot: "exp_avg"), "3.exp_avg")
    }

    func testRoundTripGivesBitwiseIdenticalSubsequentSteps() throws {
        for make in [{ try sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-4) },
                     { try adamW(lr: try .cosine(initial: 0.01, totalSteps: 6), weightDecay: 0.1) }] as [() throws -> Chain] {
            var a = freshParams()
            var optA = Optimizer(try make(), params: a)
            for k in 0..<3 { setGrads(a, step: k); optA.step(&a) }
            // Save: state and parameter values (as a checkpoint would).
            let saved = optA.stateDict()
            let savedParams = a.map { try! Tensor($0.scalars(as: Float.self), shape: $0.shape) }
            // Resume in a fresh optimizer on fresh parameter tensors.
            var b = savedParams.map { $0.requiringGrad() }
            var optB = Optimizer(try make(), params: b)
            XCTAssertEqual(optB.stepCount, 0)
            try optB.loadStateDict(saved)
            XCTAssertEqual(optB.stepCount, 3)
            for k in 3..<6 {
                setGrads(a, step: k); optA.step(&a)
                setGrads(b, step: k); optB.step(&b)
            }
            for i in a.indices { XCTAssertEqual(bits(a[i]), bits(b[i]), "parameter \(i)") }
            let da = optA.stateDict(), db = optB.stateDict()
            XCTAssertEqual(Set(da.keys), Set(db.keys))
            for (k, v) in da where k != "step" { XCTAssertEqual(bits(v), bits(db[k]!), k) }
            XCTAssertEqual(db["step"]!.item(), 6)
        }
    }

    func testStateDictIsASnapshot() throws {
        var ps = freshParams()
        var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: ps)
        setGrads(ps, step: 0); opt.step(&ps)
        let snapshot = opt.stateDict()
        let before = snapshot["0.momentum"]!.doubles()
        setGrads(ps, step: 1); opt.step(&ps)
        XCTAssertEqual(snapshot["0.momentum"]!.doubles(), before)
        XCTAssertNotEqual(opt.stateDict()["0.momentum"]!.doubles(), before)
    }

    func testLoadRejectsWrongShapeNamingKeyExpectedAndFound() throws {
        let ps = freshParams()
        var opt = Optimizer(try adam(lr: 0.01), params: ps)
        var d = opt.stateDict()
        d["1.exp_avg"] = Tensor.zeros([6])
        XCTAssertThrowsError(try opt.loadStateDict(d)) { error in
            let e = error as! OptimizerError
            XCTAssertEqual(e.kind, .stateDict)
            XCTAssertEqual(e.description, "loadStateDict: key '1.exp_avg': expected shape [5], found [6]")
        }
    }

    func testLoadRejectsMissingExtraAndBadDtypeAndChangesNothing() throws {
        var ps = freshParams()
        var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: ps)
        setGrads(ps, step: 0); opt.step(&ps)
        let good = opt.stateDict()
        func message(_ d: [String: Tensor]) -> String? {
            do { try opt.loadStateDict(d); return nil } catch { return error.description }
        }
        var missing = good; missing["2.momentum"] = nil
        XCTAssertEqual(message(missing), "loadStateDict: missing key '2.momentum' (expected shape [], float32)")
        var extra = good; extra["3.momentum"] = Tensor.zeros([1])
        XCTAssertEqual(message(extra)?.hasPrefix("loadStateDict: unexpected key '3.momentum'; this optimizer's keys are 0.momentum, 1.momentum, 2.momentum, step"), true)
        var dtype = good; dtype["0.momentum"] = Tensor.zeros([3, 2], dtype: .float64)
        XCTAssertEqual(message(dtype), "loadStateDict: key '0.momentum': expected dtype float32, found float64")
        var noStep = good; noStep["step"] = nil
        XCTAssertEqual(message(noStep), "loadStateDict: missing key 'step' (the step counter, a one-element integer tensor)")
        var badStep = good; badStep["step"] = Tensor(scalar: 1.5)
        XCTAssertEqual(message(badStep), "loadStateDict: key 'step': expected a non-negative integer, found 1.5")
        // Nothing changed after the failures.
        let now = opt.stateDict()
        XCTAssertEqual(now["step"]!.item(), 1)
        for (k, v) in good where k != "step" { XCTAssertEqual(bits(v), bits(now[k]!), k) }
        // A float step (as PyTorch stores it) is accepted.
        var floatStep = good; floatStep["step"] = Tensor(scalar: Float(7))
        try opt.loadStateDict(floatStep)
        XCTAssertEqual(opt.stepCount, 7)
    }

    func testInitFromDictionaryMatchingTemplate() throws {
        let ps = freshParams(.float64)
        let t = try adam(lr: 0.1)
        var template = t.initState(params: ps)
        template.step = 4
        template.withSlot("exp_avg", param: 1) { $0 = try! Tensor([1.0, 2, 3, 4, 5], shape: [5]) }
        let restored = try OptimizerState(dictionary: template.dictionary(), matching: t.initState(params: ps))
        XCTAssertEqual(restored.step, 4)
        XCTAssertEqual(restored.slot("exp_avg", param: 1)!.doubles(), [1, 2, 3, 4, 5])
        XCTAssertEqual(restored.slot("exp_avg_sq", param: 0)!.doubles(), [0, 0, 0, 0, 0, 0])
        XCTAssertFalse(restored.slot("exp_avg", param: 1)!.storageBlock === template.slot("exp_avg", param: 1)!.storageBlock,
                       "loaded tensors are copied")
    }
}
