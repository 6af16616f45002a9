import XCTest
@testable import Layers
import TensorCore

final class LayerNormTests: XCTestCase {
    func testHandComputed() {
        let ln = LayerNorm(3)
        normsToFloat64(ln)
        let x = try! Tensor([1.0, 2, 3, 10, 10, 13], shape: [2, 3])
        // Row 0: mean 2, biased var 2/3. Row 1: mean 11, biased var 2.
        let s0 = (2.0 / 3 + 1e-5).squareRoot(), s1 = (2.0 + 1e-5).squareRoot()
        normsAssertClose(ln(x).doubles(), [-1 / s0, 0, 1 / s0, -1 / s1, -1 / s1, 2 / s1], atol: 1e-12, rtol: 1e-12, "LayerNorm")
    }

    func testMatchesPyTorchValuesAndGradients() {
        let ln = LayerNorm([3, 4])
        normsToFloat64(ln)
        let x = NormsFixtures.tensor("ln.x")
        let (y, grads) = vjp(of: [x, NormsFixtures.tensor("ln.weight"), NormsFixtures.tensor("ln.bias")],
                             cotangent: NormsFixtures.tensor("ln.cot")) { xs in
            ln.weight!.value = xs[1]
            ln.bias!.value = xs[2]
            return ln(xs[0])
        }
        normsAssertClose(y, NormsFixtures.tensor("ln.out"), "LayerNorm output")
        normsAssertClose(grads[0], NormsFixtures.tensor("ln.grad_x"), "LayerNorm grad x")
        normsAssertClose(grads[1], NormsFixtures.tensor("ln.grad_weight"), "LayerNorm grad weight")
        normsAssertClose(grads[2], NormsFixtures.tensor("ln.grad_bias"), "LayerNorm grad bias")
    }

    func testStateDictAndOptions() {
        let ln = LayerNorm([3, 4])
        XCTAssertEqual(ln.stateDict().map(\.0), ["weight", "bias"])
        XCTAssertEqual(ln.weight!.shape, [3, 4])
        XCTAssertEqual(ln.weight!.value.doubles(), [Double](repeating: 1, count: 12))
        XCTAssertEqual(ln.bias!.value.doubles(), [Double](repeating: 0, count: 12))
        XCTAssertTrue(LayerNorm([4], elementwiseAffine: false).stateDict().isEmpty)
        XCTAssertEqual(LayerNorm([4], bias: false).stateDict().map(\.0), ["weight"])
        // Float32 input through Float32 parameters.
        let y = LayerNorm(4)(Tensor.randn([2, 4], generator: Generator(seed: 1)))
        XCTAssertEqual(y.dtype, .float32)
        XCTAssertEqual(y.mean(dims: [1]).doubles()[0], 0, accuracy: 1e-6)
    }

    func testGradientsFiniteDifferences() {
        let ln = LayerNorm([2, 3])
        normsToFloat64(ln)
        let x = normsRandn([4, 2, 3], mean: 1, std: 2, seed: 2)
        normsCheckGradients("LayerNorm", [x, normsRandn([2, 3], mean: 1, seed: 3), normsRandn([2, 3], seed: 4)]) { xs in
            ln.weight!.value = xs[1]
            ln.bias!.value = xs[2]
            return ln(xs[0])
        }
    }
}

final class LocalResponseNormTests: XCTestCase {
    func testHandComputed() {
        // size 3, alpha 3 (alpha / size = 1), beta 1, k 1: b_c = a_c / (1 + Σ_{c-1..c+1} a²).
        let lrn = LocalResponseNorm(size: 3, alpha: 3, beta: 1, k: 1)
        let x = try! Tensor([1.0, 2, 3], shape: [1, 3, 1])
        normsAssertClose(lrn(x).doubles(), [1.0 / 6, 2.0 / 15, 3.0 / 14], atol: 1e-12, rtol: 1e-12, "LRN")
        // Even size 2: window [c - 1, c] (size/2 before, (size-1)/2 after).
        let lrn2 = LocalResponseNorm(size: 2, alpha: 2, beta: 1, k: 1)
        normsAssertClose(lrn2(x).doubles(), [1.0 / 2, 2.0 / 6, 3.0 / 14], atol: 1e-12, rtol: 1e-12, "LRN even size")
        // Defaults are AlexNet's k, n and beta, PyTorch's alpha convention.
        let d = LocalResponseNorm()
        XCTAssertEqual([Double(d.size), d.alpha, d.beta, d.k], [5, 1e-4, 0.75, 2])
        XCTAssertTrue(d.stateDict().isEmpty)
    }

    func testMatchesPyTorch() {
        let lrn5 = LocalResponseNorm(size: 5, alpha: 1e-4, beta: 0.75, k: 2)
        normsAssertClose(lrn5(NormsFixtures.tensor("lrn5.x")), NormsFixtures.tensor("lrn5.out"), "LRN size 5")
        let lrn4 = LocalResponseNorm(size: 4, alpha: 0.5, beta: 0.75, k: 1)
        let (y, g) = vjp(of: [NormsFixtures.tensor("lrn4.x")], cotangent: NormsFixtures.tensor("lrn4.cot")) { lrn4($0[0]) }
        normsAssertClose(y, NormsFixtures.tensor("lrn4.out"), "LRN size 4 (3-D input)")
        normsAssertClose(g[0], NormsFixtures.tensor("lrn4.grad_x"), "LRN size 4 grad")
        // Float32 agrees with the Float64 reference.
        normsAssertClose(lrn5(NormsFixtures.tensor("lrn5.x").to(.float32)).doubles(), NormsFixtures.values("lrn5.out"),
                         atol: 1e-5, rtol: 1e-5, "LRN Float32")
    }

    func testGradientsFiniteDifferences() {
        for size in [1, 2, 3, 5] {
            let lrn = LocalResponseNorm(size: size, alpha: 0.3, beta: 0.75, k: 1)
            normsCheckGradients("LRN size \(size)", [normsRandn([2, 4, 2, 2], seed: UInt64(size))]) { lrn($0[0]) }
        }
    }
}
