import XCTest
import TensorCore
@testable import Optimizers

final class TransformationsTests: XCTestCase {
    private func t(_ v: [Double], _ shape: [Int]? = nil) -> Tensor { try! Tensor(v, shape: shape ?? [v.count]) }

    func testScaleByLearningRateUsesTheScheduleAtThePreUpdateStep() throws {
        let s = try scaleByLearningRate(LRSchedule("double") { Double($0 + 1) })
        let params = [t([0, 0])]
        var state = s.initState(params: params)
        XCTAssertEqual(state.step, 0)
        XCTAssertEqual(s.update(grads: [t([1, -2])], state: &state, params: params)[0].doubles(), [-1, 2])
        XCTAssertEqual(state.step, 1)
        XCTAssertEqual(s.update(grads: [t([1, -2])], state: &state, params: params)[0].doubles(), [-2, 4])
        XCTAssertEqual(state.step, 2)
    }

    func testTraceMomentumStandalone() throws {
        let m = try traceMomentum(beta: 0.5)
        let params = [t([0, 0, 0])]
        var state = m.initState(params: params)
        XCTAssertEqual(state.slot("momentum", param: 0)!.doubles(), [0, 0, 0])
        XCTAssertEqual(m.update(grads: [t([2, 4, -8])], state: &state, params: params)[0].doubles(), [2, 4, -8])
        XCTAssertEqual(m.update(grads: [t([1, 1, 1])], state: &state, params: params)[0].doubles(), [2, 3, -3])
        XCTAssertEqual(state.slot("momentum", param: 0)!.doubles(), [2, 3, -3])
        let n = try traceMomentum(beta: 0.5, nesterov: true)
        var ns = n.initState(params: params)
        // buf = g = [2, 4, -8]; update = g + 0.5 * buf.
        XCTAssertEqual(n.update(grads: [t([2, 4, -8])], state: &ns, params: params)[0].doubles(), [3, 6, -12])
        // buf = 0.5 * [2, 4, -8] + [1, 1, 1] = [2, 3, -3]; update = [1, 1, 1] + [1, 1.5, -1.5].
        XCTAssertEqual(n.update(grads: [t([1, 1, 1])], state: &ns, params: params)[0].doubles(), [2, 2.5, -0.5])
    }

    func testAddDecayedWeights() throws {
        let d = try addDecayedWeights(0.5)
        let params = [t([2, -4])]
        var state = d.initState(params: params)
        XCTAssertEqual(d.update(grads: [t([1, 1])], state: &state, params: params)[0].doubles(), [2, -1])
        XCTAssertEqual(state.step, 1)
        XCTAssertTrue(state.dictionary().keys.elementsEqual(["step"]))
    }

    func testScaleByAdamFirstStepIsTheSignForLargeGradients() throws {
        let a = try scaleByAdam()
        let params = [t([0, 0, 0])]
        var state = a.initState(params: params)
        let u = a.update(grads: [t([3, -0.5, 0])], state: &state, params: params)[0].doubles()
        XCTAssertEqual(u[0], 1, accuracy: 1e-8)
        XCTAssertEqual(u[1], -1, accuracy: 1e-7)
        XCTAssertEqual(u[2], 0)
        XCTAssertEqual(state.slot("exp_avg", param: 0)!.doubles()[0], 0.3, accuracy: 1e-15)
        XCTAssertEqual(state.slot("exp_avg_sq", param: 0)!.doubles()[0], 0.009, accuracy: 1e-15)
    }

    func testChainFeedsEachMemberTheLastOutputAndCountsOneStep() throws {
        let c = chain(try addDecayedWeights(1), try traceMomentum(beta: 0.5), try scaleByLearningRate(0.1))
        let params = [t([1, 2])]
        var state = c.initState(params: params)
        XCTAssertEqual(Set(state.dictionary().keys), ["step", "0.momentum"])
        // g + p = [2, 3]; buf = [2, 3]; update = -0.1 * buf.
        let u1 = c.update(grads: [t([1, 1])], state: &state, params: params)[0].doubles()
        XCTAssertEqual(u1[0], -0.2, accuracy: 1e-15)
        XCTAssertEqual(u1[1], -0.3, accuracy: 1e-15)
        XCTAssertEqual(state.step, 1)
        _ = c.update(grads: [t([1, 1])], state: &state, params: params)
        XCTAssertEqual(state.step, 2)
        // Empty chain: identity.
        var es = chain().initState(params: params)
        XCTAssertEqual(chain().update(grads: [t([5, 6])], state: &es, params: params)[0].doubles(), [5, 6])
        XCTAssertEqual(es.step, 1)
    }

    func testTwoMomentumTracesWithDistinctSlotNamesInOneChain() throws {
        let c = chain(try TraceMomentum(beta: 0.5), try TraceMomentum(beta: 0.5, slotName: "momentum2"))
        let params = [t([0])]
        var state = c.initState(params: params)
        XCTAssertEqual(Set(state.dictionary().keys), ["step", "0.momentum", "0.momentum2"])
        XCTAssertEqual(c.update(grads: [t([4])], state: &state, params: params)[0].doubles(), [4])
        // First trace: 0.5 * 4 + 2 = 4; second: 0.5 * 4 + 4 = 6.
        XCTAssertEqual(c.update(grads: [t([2])], state: &state, params: params)[0].doubles(), [6])
    }

    func testGlobalNormByHand() {
        let a = t([3, 4])                      // 25
        let b = t([1, 2, 2, 0], [2, 2])        // 9
        let e = Tensor.zeros([0, 3], dtype: .float64)
        XCTAssertEqual(globalNorm([a, b, e]), (34.0).squareRoot(), accuracy: 1e-14)
        XCTAssertEqual(globalNorm([]), 0)
        // A transposed (non-contiguous) tensor has the same norm.
        XCTAssertEqual(globalNorm([b.transposed(0, 1)]), 3, accuracy: 1e-15)
        // Float32 tensors.
        XCTAssertEqual(globalNorm([a.to(.float32)]), 5, accuracy: 1e-6)
    }

    func testClipByGlobalNormScalesAllTogether() throws {
        let c = try clipByGlobalNorm(1.0)
        let grads = [t([3, 4]), t([0, 12], [1, 2])]   // global norm 13
        let params = grads.map { $0.zerosLike() }
        var state = c.initState(params: params)
        let out = c.update(grads: grads, state: &state, params: params)
        let coef = 1.0 / (13 + 1e-6)
        XCTAssertEqual(out[0].doubles()[0], 3 * coef, accuracy: 1e-15)
        XCTAssertEqual(out[0].doubles()[1], 4 * coef, accuracy: 1e-15)
        XCTAssertEqual(out[1].doubles()[1], 12 * coef, accuracy: 1e-15)
        XCTAssertEqual(out[1].shape, [1, 2])
        XCTAssertEqual(globalNorm(out), 1, accuracy: 1e-6)
        XCTAssertEqual(state.step, 1)
    }

    func testClipByGlobalNormIsANoOpUnderTheMax() throws {
        let c = try clipByGlobalNorm(5.0)
        let grads = [t([0.1, -0.2]), t([1.5, 2.0, -3.0])]   // norm ≈ 3.88
        let params = grads.map { $0.zerosLike() }
        var state = c.initState(params: params)
        let out = c.update(grads: grads, state: &state, params: params)
        for (o, g) in zip(out, grads) {
            XCTAssertEqual(o.doubles().map(\.bitPattern), g.doubles().map(\.bitPattern))
        }
        // Exactly at the max: the 1e-6 guard makes the coefficient < 1 (as in PyTorch).
        let atMax = c.update(grads: [t([3, 4]), t([0, 0, 0])], state: &state, params: params)
        XCTAssertLessThan(atMax[0].doubles()[1], 4)
        XCTAssertEqual(atMax[0].doubles()[1], 4 * 5 / (5 + 1e-6), accuracy: 1e-15)
    }

    func testClipPropagatesNonFiniteNormLikePyTorch() throws {
        let c = try clipByGlobalNorm(1.0)
        let grads = [t([.nan, 1])]
        var state = c.initState(params: grads)
        let out = c.update(grads: grads, state: &state, params: grads)[0].doubles()
        XCTAssertTrue(out[0].isNaN && out[1].isNaN)
    }

    func testClippedSGDMatchesReference() throws {
        var ref = ReferenceSGD(lr: { _ in 0.1 }, momentum: 0.9)
        let maxNorm = 0.5
        assertMatchesReference("clip + sgd", chain(try clipByGlobalNorm(maxNorm), try sgd(lr: 0.1, momentum: 0.9)),
                               reference: { p, g in
                                   var total = 0.0
                                   for gi in g { for x in gi { total += x * x } }
                                   let coef = min(1, maxNorm / (total.squareRoot() + 1e-6))
                                   ref.update(&p, g.map { $0.map { $0 * coef } })
                               }, steps: 5, gradScale: 3)
    }

    func testBuildingBlocksRejectBadArguments() {
        XCTAssertThrowsError(try clipByGlobalNorm(0))
        XCTAssertThrowsError(try clipByGlobalNorm(-1))
        XCTAssertThrowsError(try clipByGlobalNorm(.nan))
        XCTAssertThrowsError(try traceMomentum(beta: 1))
        XCTAssertThrowsError(try addDecayedWeights(-0.1))
        XCTAssertThrowsError(try scaleByAdam(b1: 0.9, b2: 1.0))
        XCTAssertThrowsError(try scaleByAdam(eps: -1e-8))
        XCTAssertThrowsError(try scaleByLearningRate(0))
        XCTAssertThrowsError(try scaleByLearningRate(.nan))
        do {
            _ = try clipByGlobalNorm(0)
        } catch {
            XCTAssertEqual(error.description, "clipByGlobalNorm: maxNorm 0.0: expected a positive, finite value")
        }
    }
}
