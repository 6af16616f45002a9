import Foundation
import XCTest
@testable import TensorCore

/// Unary ops on tensors large enough to be split among Loom's workers (≥ 2 · minChunk
/// elements), contiguous and transposed, Float64 and Float32, against scalar math.
final class UnaryParallelTests: XCTestCase {
    func testLargeUnaryOpsMatchScalarMath() throws {
        let rows = 301, cols = 701  // 211K elements, odd extents
        let xs = (0..<(rows * cols)).map { i in Double((i &* 7919) % 2001 - 1000) / 250 }  // in [-4, 4]
        let pos = xs.map { Swift.abs($0) + 0.01 }
        let table: [(String, (Tensor) -> Tensor, (Double) -> Double, [Double])] = [
            ("neg", { -$0 }, { -$0 }, xs),
            ("abs", { $0.abs() }, { Swift.abs($0) }, xs),
            ("sign", { $0.sign() }, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, xs),
            ("relu", { $0.relu() }, { Swift.max($0, 0) }, xs),
            ("sqrt", { $0.sqrt() }, { $0.squareRoot() }, pos),
            ("rsqrt", { $0.rsqrt() }, { 1 / $0.squareRoot() }, pos),
            ("exp", { $0.exp() }, { Foundation.exp($0) }, xs),
            ("log", { $0.log() }, { Foundation.log($0) }, pos),
            ("sin", { $0.sin() }, { Foundation.sin($0) }, xs),
            ("tanh", { $0.tanh() }, { Foundation.tanh($0) }, xs),
            ("sigmoid", { $0.sigmoid() }, { 1 / (1 + Foundation.exp(-$0)) }, xs),
            ("gelu", { $0.gelu() }, { $0 * 0.5 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, xs),
        ]
        for (name, op, ref, values) in table {
            let x = try Tensor(values, shape: [rows, cols])
            // The transpose reads the same storage with swapped strides: element (j, i) is values[i * cols + j].
            let xt = x.transposed(0, 1)
            XCTAssertFalse(xt.isContiguous)
            var expectedT = [Double](repeating: 0, count: values.count)
            for i in 0..<rows { for j in 0..<cols { expectedT[j * rows + i] = ref(values[i * cols + j]) } }
            let expected = values.map(ref)
            for (label, input, want) in [("contiguous", x, expected), ("transposed", xt, expectedT)] {
                let got64 = op(input).doubles()
                XCTAssertEqual(got64.count, want.count)
                for k in 0..<want.count where Swift.abs(got64[k] - want[k]) > 1e-14 * Swift.max(1, Swift.abs(want[k])) {
                    XCTFail("\(name) float64 \(label) [\(k)]: \(got64[k]) vs \(want[k])")
                    break
                }
                let got32 = op(input.to(.float32)).doubles()
                for k in 0..<want.count where Swift.abs(got32[k] - want[k]) > 2e-6 * Swift.max(1, Swift.abs(want[k])) {
                    XCTFail("\(name) float32 \(label) [\(k)]: \(got32[k]) vs \(want[k])")
                    break
                }
            }
        }
    }
}
