import XCTest
import Optimizers
import TensorCore

/// Elementwise rules are applied one parameter at a time: the same numbers as updating all
/// parameters together, with the temporaries of one parameter at a time.
final class ElementwiseStepTests: XCTestCase {
    /// The identity, not marked elementwise: forces the all-parameters-at-once path.
    struct Opaque: GradientTransformation {
        func initState(params: [Tensor]) -> OptimizerState { OptimizerState(parameterCount: params.count) }
        func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
            state.step += 1
            return grads
        }
    }

    func run(_ t: any GradientTransformation, steps: Int = 3) -> (values: [[Float]], peak: Int) {
        let g = Generator(seed: 4)
        var params = [Tensor.randn([64, 128], generator: g), Tensor.randn([128], generator: g), Tensor.randn([256, 64], generator: g)]
            .map { $0.requiringGrad() }
        var opt = Optimizer(t, params: params)
        var peak = 0
        for s in 0..<steps {
            for p in params { p.grad = Tensor.randn(p.shape, generator: Generator(seed: UInt64(10 + s))) }
            let before = Memory.stats().current
            Memory.resetPeak()
            opt.step(&params)
            peak = Swift.max(peak, Memory.stats().peak - before)
            for p in params { p.zeroGrad() }
        }
        return (params.map { $0.scalars(as: Float.self) }, peak)
    }

    func testPerParameterStepEqualsAllAtOnceAndUsesLessMemory() throws {
        for rule in [try sgd(lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-4), try adamW(lr: 1e-3, weightDecay: 0.01)] {
            XCTAssertTrue(rule.isElementwise)
            let perParameter = run(rule)
            let allAtOnce = run(chain([rule, Opaque()]))
            XCTAssertEqual(perParameter.values, allAtOnce.values)
            // All at once holds every parameter's temporaries together (>= the whole
            // parameter set once more); one at a time holds the largest parameter's.
            let total = (64 * 128 + 128 + 256 * 64) * 4
            XCTAssertGreaterThanOrEqual(allAtOnce.peak, total)
            XCTAssertLessThan(perParameter.peak, allAtOnce.peak, "per parameter \(perParameter.peak) vs all at once \(allAtOnce.peak)")
        }
        XCTAssertFalse(chain([try clipByGlobalNorm(1), try sgd(lr: 0.1)]).isElementwise)
    }
}
