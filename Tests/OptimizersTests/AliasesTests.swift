import XCTest
import TensorCore
@testable import Optimizers

/// Every alias against the independent Float64 references in Support/References.swift.
final class AliasesTests: XCTestCase {
    func testPlainSGD() throws {
        var ref = ReferenceSGD(lr: { _ in 0.1 })
        assertMatchesReference("sgd", try sgd(lr: 0.1), reference: { ref.update(&$0, $1) })
    }

    func testSGDMomentum() throws {
        var ref = ReferenceSGD(lr: { _ in 0.05 }, momentum: 0.9)
        assertMatchesReference("sgd momentum", try sgd(lr: 0.05, momentum: 0.9), reference: { ref.update(&$0, $1) })
    }

    func testSGDNesterov() throws {
        var ref = ReferenceSGD(lr: { _ in 0.05 }, momentum: 0.8, nesterov: true)
        assertMatchesReference("sgd nesterov", try sgd(lr: 0.05, momentum: 0.8, nesterov: true), reference: { ref.update(&$0, $1) })
    }

    func testSGDWeightDecayAlexNetRecipe() throws {
        var ref = ReferenceSGD(lr: { _ in 0.01 }, momentum: 0.9, weightDecay: 5e-4)
        assertMatchesReference("sgd alexnet", try sgd(lr: 0.01, momentum: 0.9, weightDecay: 5e-4), reference: { ref.update(&$0, $1) })
        // A large decay so the term dominates, with Nesterov.
        var ref2 = ReferenceSGD(lr: { _ in 0.1 }, momentum: 0.5, nesterov: true, weightDecay: 0.3)
        assertMatchesReference("sgd nesterov decay", try sgd(lr: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.3),
                               reference: { ref2.update(&$0, $1) })
        // Weight decay without momentum.
        var ref3 = ReferenceSGD(lr: { _ in 0.1 }, weightDecay: 0.2)
        assertMatchesReference("sgd decay only", try sgd(lr: 0.1, weightDecay: 0.2), reference: { ref3.update(&$0, $1) })
    }

    func testSGDWithSchedule() throws {
        let schedule = try LRSchedule.stepDecay(initial: 0.2, stepSize: 2, gamma: 0.5)
        var ref = ReferenceSGD(lr: { schedule($0) }, momentum: 0.9)
        assertMatchesReference("sgd step decay", try sgd(lr: schedule, momentum: 0.9), reference: { ref.update(&$0, $1) }, steps: 7)
    }

    func testAdam() throws {
        var ref = ReferenceAdam(lr: { _ in 0.01 })
        assertMatchesReference("adam", try adam(lr: 0.01), reference: { ref.update(&$0, $1) }, steps: 8)
    }

    func testAdamNonDefaultBetasAndWeightDecay() throws {
        var ref = ReferenceAdam(lr: { _ in 0.02 }, b1: 0.8, b2: 0.95, eps: 1e-6, weightDecay: 0.1)
        assertMatchesReference("adam decay", try adam(lr: 0.02, b1: 0.8, b2: 0.95, eps: 1e-6, weightDecay: 0.1),
                               reference: { ref.update(&$0, $1) }, steps: 8)
        // b1 < 0.5 exercises the other branch of lerp.
        var ref2 = ReferenceAdam(lr: { _ in 0.02 }, b1: 0.3, b2: 0.5, eps: 1e-6)
        assertMatchesReference("adam small betas", try adam(lr: 0.02, b1: 0.3, b2: 0.5, eps: 1e-6),
                               reference: { ref2.update(&$0, $1) }, steps: 8)
    }

    func testAdamBiasCorrectionFirstStepMovesByLR() throws {
        // With bias correction the first Adam step is lr * g / (|g| + eps'), i.e. ~lr * sign(g),
        // whatever the gradient's magnitude; without it, it would be (1 - b1) / sqrt(1 - b2) ~ 3.16x that.
        var params = [try Tensor([1.0, 1.0, 1.0, 1.0], shape: [4]).requiringGrad()]
        var opt = Optimizer(try adam(lr: 0.01), params: params)
        params[0].grad = try Tensor([1e-3, -5.0, 200.0, -0.25], shape: [4])
        opt.step(&params)
        let moved = params[0].doubles().map { $0 - 1 }
        let expected = [-0.01, 0.01, -0.01, 0.01]
        for (a, b) in zip(moved, expected) { XCTAssertEqual(a, b, accuracy: 2e-7) }
    }

    func testAdamW() throws {
        var ref = ReferenceAdam(lr: { _ in 0.01 }, weightDecay: 0.1, decoupled: true)
        assertMatchesReference("adamW", try adamW(lr: 0.01, weightDecay: 0.1), reference: { ref.update(&$0, $1) }, steps: 8)
    }

    func testAdamWDecouplingDiffersFromCoupledDecay() throws {
        // With zero gradients Adam's moments stay zero, so AdamW only decays: p *= 1 - lr * wd,
        // while Adam's coupled decay feeds wd * p through the moments (a step of ~lr * sign(p)).
        var pw = [try Tensor([2.0, -4.0], shape: [2]).requiringGrad()]
        var pa = [try Tensor([2.0, -4.0], shape: [2]).requiringGrad()]
        var w = Optimizer(try adamW(lr: 0.1, weightDecay: 0.5), params: pw)
        var a = Optimizer(try adam(lr: 0.1, weightDecay: 0.5), params: pa)
        pw[0].grad = Tensor.zeros([2], dtype: .float64)
        pa[0].grad = Tensor.zeros([2], dtype: .float64)
        w.step(&pw)
        a.step(&pa)
        XCTAssertEqual(pw[0].doubles()[0], 2 * (1 - 0.1 * 0.5), accuracy: 1e-15)
        XCTAssertEqual(pw[0].doubles()[1], -4 * (1 - 0.1 * 0.5), accuracy: 1e-15)
        XCTAssertEqual(pa[0].doubles()[0], 2 - 0.1, accuracy: 1e-7)
        XCTAssertEqual(pa[0].doubles()[1], -4 + 0.1, accuracy: 1e-7)
    }

    func testAdamWWithSchedule() throws {
        let schedule = try LRSchedule.linearWarmup(steps: 3, then: try .cosine(initial: 0.03, totalSteps: 5, final: 0.001))
        var ref = ReferenceAdam(lr: { schedule($0) }, weightDecay: 0.05, decoupled: true)
        assertMatchesReference("adamW warmup cosine", try adamW(lr: schedule, weightDecay: 0.05), reference: { ref.update(&$0, $1) }, steps: 10)
    }

    func testFloat32MatchesReferenceWithinRounding() throws {
        var ref = ReferenceSGD(lr: { _ in 0.05 }, momentum: 0.9, nesterov: true, weightDecay: 1e-2)
        assertMatchesReference("sgd f32", try sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-2),
                               reference: { ref.update(&$0, $1) }, dtype: .float32, tol: 2e-6)
        var ref2 = ReferenceAdam(lr: { _ in 0.01 }, weightDecay: 0.1, decoupled: true)
        assertMatchesReference("adamW f32", try adamW(lr: 0.01, weightDecay: 0.1),
                               reference: { ref2.update(&$0, $1) }, dtype: .float32, tol: 2e-6)
    }

    func testAliasChainsHaveTheExpectedMembers() throws {
        XCTAssertEqual(try sgd(lr: 0.1).transformations.count, 1)
        let s = try sgd(lr: 0.1, momentum: 0.9, weightDecay: 5e-4)
        XCTAssertTrue(s.transformations[0] is AddDecayedWeights)
        XCTAssertTrue(s.transformations[1] is TraceMomentum)
        XCTAssertTrue(s.transformations[2] is ScaleByLearningRate)
        let w = try adamW(lr: 1e-3)
        XCTAssertTrue(w.transformations[0] is ScaleByAdam)
        XCTAssertTrue(w.transformations[1] is AddDecayedWeights)
        let a = try adam(lr: 1e-3, weightDecay: 0.1)
        XCTAssertTrue(a.transformations[0] is AddDecayedWeights)
        XCTAssertTrue(a.transformations[1] is ScaleByAdam)
        // Plain SGD keeps no slots; momentum keeps one per parameter; Adam two.
        let ps = [Tensor.zeros([2, 2]), Tensor.zeros([3])]
        XCTAssertEqual(Set(try sgd(lr: 0.1).initState(params: ps).dictionary().keys), ["step"])
        XCTAssertEqual(Set(s.initState(params: ps).dictionary().keys), ["step", "0.momentum", "1.momentum"])
        XCTAssertEqual(Set(a.initState(params: ps).dictionary().keys),
                       ["step", "0.exp_avg", "0.exp_avg_sq", "1.exp_avg", "1.exp_avg_sq"])
    }

    func testBadHyperparametersThrowNamingTheValue() {
        func message(_ body: () throws -> Chain) -> String? {
            do { _ = try body(); return nil } catch { return (error as? OptimizerError)?.description ?? "not an OptimizerError: \(error)" }
        }
        XCTAssertEqual(message { try sgd(lr: 0) }, "sgd: lr 0.0: expected a positive, finite learning rate")
        XCTAssertEqual(message { try sgd(lr: -0.1) }, "sgd: lr -0.1: expected a positive, finite learning rate")
        XCTAssertNotNil(message { try sgd(lr: .nan) })
        XCTAssertNotNil(message { try sgd(lr: .infinity) })
        XCTAssertEqual(message { try sgd(lr: 0.1, momentum: 1) }, "sgd: momentum 1.0: expected a value in [0, 1)")
        XCTAssertNotNil(message { try sgd(lr: 0.1, momentum: -0.1) })
        XCTAssertNotNil(message { try sgd(lr: 0.1, momentum: .nan) })
        XCTAssertEqual(message { try sgd(lr: 0.1, weightDecay: -1e-4) }, "sgd: weightDecay -0.0001: expected a non-negative, finite value")
        XCTAssertEqual(message { try sgd(lr: 0.1, nesterov: true) }, "sgd: nesterov requires a momentum in (0, 1), got momentum 0.0")
        XCTAssertEqual(message { try adam(lr: 0.1, b1: 1) }, "adam: b1 1.0: expected a value in [0, 1)")
        XCTAssertEqual(message { try adam(lr: 0.1, b2: -0.5) }, "adam: b2 -0.5: expected a value in [0, 1)")
        XCTAssertEqual(message { try adam(lr: 0.1, eps: 0) }, "adam: eps 0.0: expected a positive, finite value")
        XCTAssertNotNil(message { try adam(lr: 0.1, eps: .nan) })
        XCTAssertNotNil(message { try adamW(lr: 0.1, weightDecay: -0.01) })
        XCTAssertNotNil(message { try adamW(lr: -1) })
        XCTAssertNotNil(message { try adamW(lr: LRSchedule("zero") { _ in 0 }) })
        XCTAssertEqual(message { try sgd(lr: LRSchedule("broken") { _ in .nan }) },
                       "sgd: lr schedule broken gives nan at step 0: expected a positive, finite learning rate")
        do { _ = try sgd(lr: 0) } catch { XCTAssertEqual(error.kind, .argument) }
    }
}
