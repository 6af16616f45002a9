import XCTest
import TensorCore

/// `Tensor.batchNorm` with a Float16/BFloat16 input and Float32 weight and bias: one
/// kernel reading the half values directly (statistics in Float64, outputs rounded once).
final class BatchNormMixedTests: XCTestCase {
    func testMixedEqualsFloat32OnTheSameValuesWithinOneRounding() {
        for dtype in [DType.float16, .bfloat16] {
            let x = Tensor.randn([4, 3, 5, 5], generator: Generator(seed: 31)).to(dtype)  // the values both paths see
            let w = Tensor.randn([3], generator: Generator(seed: 32)), b = Tensor.randn([3], generator: Generator(seed: 33))
            let g = Tensor.randn([4, 3, 5, 5], generator: Generator(seed: 34)).to(dtype)
            let (vMixed, gMixed) = valueAndGrad(of: [x, w, b]) { t in
                let r = t[0].batchNorm(weight: t[1], bias: t[2], eps: 1e-5)
                XCTAssertEqual(r.output.dtype, dtype)
                XCTAssertEqual(r.mean.dtype, .float32)
                return (r.output.to(.float32) * g.to(.float32)).sum()
            }
            let (vRef, gRef) = valueAndGrad(of: [x.to(.float32), w, b]) { t in
                (t[0].batchNorm(weight: t[1], bias: t[2], eps: 1e-5).output * g.to(.float32)).sum()
            }
            let mixed = x.batchNorm(weight: w, bias: b, eps: 1e-5), ref = x.to(.float32).batchNorm(weight: w, bias: b, eps: 1e-5)
            let ulp = dtype == .float16 ? 1e-3 : 8e-3
            XCTAssertEqual(mixed.mean.doubles(), ref.mean.doubles(), accuracy: 1e-6)
            XCTAssertEqual(mixed.variance.doubles(), ref.variance.doubles(), accuracy: 1e-6)
            XCTAssertEqual(mixed.output.doubles(), ref.output.to(dtype).doubles(), accuracy: ulp, relative: true)
            XCTAssertEqual(vMixed.item(), vRef.item(), accuracy: 1e-2 * max(1, abs(vRef.item())))
            XCTAssertEqual(gMixed[0].dtype, dtype)
            XCTAssertEqual(gMixed[1].dtype, .float32)
            XCTAssertEqual(gMixed[0].doubles(), gRef[0].to(dtype).doubles(), accuracy: ulp, relative: true)
            XCTAssertEqual(gMixed[1].doubles(), gRef[1].doubles(), accuracy: 1e-4, relative: true)
            XCTAssertEqual(gMixed[2].doubles(), gRef[2].doubles(), accuracy: 1e-4, relative: true)
        }
    }

    /// Forward and backward allocate half-sized tensors only: output, gradient and input
    /// gradient (3 x 2 bytes an element), no Float32 copy (4 bytes an element each).
    func testMixedAllocatesNoFloat32Copies() {
        let n = 16 * 8 * 16 * 16
        let x = Tensor.randn([16, 8, 16, 16], generator: Generator(seed: 35)).to(.float16).requiringGrad()
        let w = Tensor.ones([8]).requiringGrad(), b = Tensor.zeros([8]).requiringGrad()
        Memory.resetPeak()
        let start = Memory.stats().current
        x.batchNorm(weight: w, bias: b, eps: 1e-5).output.sum().backward()
        let extra = Memory.stats().peak - start
        XCTAssertLessThan(extra, 3 * 2 * n + 4096, "peak grew by \(extra) B for \(n) half elements")
        XCTAssertEqual(x.grad?.dtype, .float16)
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, relative: Bool = false,
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= accuracy * (relative ? max(1, abs(b[i])) : 1)) {
        XCTFail("element \(i): \(a[i]) vs \(b[i])", file: file, line: line)
        return
    }
}
