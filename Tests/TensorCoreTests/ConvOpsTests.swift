import XCTest
import TensorCore
import TensorKernels

/// Direct-loop conv2d over row-major Double arrays (the oracle for the op tests).
private func directConv2d(_ x: [Double], _ xs: [Int], _ w: [Double], _ ws: [Int], _ b: [Double]?,
                          stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int) -> [Double] {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3])
    let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
    let ow = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
    let og = o / groups
    var y = [Double](repeating: 0, count: n * o * oh * ow)
    for bi in 0..<n {
        for oc in 0..<o {
            let g = oc / og
            for i in 0..<oh {
                for j in 0..<ow {
                    var s = b?[oc] ?? 0
                    for cc in 0..<cg {
                        for p in 0..<kh {
                            for q in 0..<kw {
                                let ih = i * stride.0 - padding.0 + p * dilation.0
                                let iw = j * stride.1 - padding.1 + q * dilation.1
                                guard ih >= 0, ih < h, iw >= 0, iw < wd else { continue }
                                s += w[((oc * cg + cc) * kh + p) * kw + q] * x[((bi * c + g * cg + cc) * h + ih) * wd + iw]
                            }
                        }
                    }
                    y[((bi * o + oc) * oh + i) * ow + j] = s
                }
            }
        }
    }
    return y
}

private func assertAllClose(_ a: [Double], _ b: [Double], tol: Double, _ msg: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(msg): count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= tol * max(1, abs(b[i]))) {
        XCTFail("\(msg): element \(i): \(a[i]) vs \(b[i])", file: file, line: line)
        return
    }
}

final class ConvOpsTests: XCTestCase {
    func testConv2dHandFixture() throws {
        // 1..9 in a 3x3 image, 2x2 kernel of ones: sums of each 2x2 block.
        let x = try Tensor((1...9).map(Float.init), shape: [1, 1, 3, 3])
        let w = Tensor.ones([1, 1, 2, 2])
        let y = x.conv2d(w)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars(as: Float.self), [12, 16, 24, 28])
        // Padding 1, stride 2, bias 0.5.
        let y2 = x.conv2d(w, bias: Tensor([Float(0.5)]), stride: (2, 2), padding: (1, 1))
        XCTAssertEqual(y2.shape, [1, 1, 2, 2])
        XCTAssertEqual(y2.scalars(as: Float.self), [1.5, 5.5, 11.5, 28.5])
    }

    func testConv2dMatchesDirectLoops() {
        struct Case { var x: [Int]; var w: [Int]; var stride = (1, 1); var padding = (0, 0); var dilation = (1, 1); var groups = 1; var bias = true }
        let cases = [
            Case(x: [2, 3, 7, 6], w: [4, 3, 3, 3]),
            Case(x: [2, 3, 9, 8], w: [5, 3, 3, 3], stride: (2, 2), padding: (1, 1)),
            Case(x: [1, 2, 9, 10], w: [3, 2, 3, 3], padding: (2, 1), dilation: (2, 2), bias: false),
            Case(x: [2, 4, 6, 7], w: [6, 2, 3, 2], stride: (1, 2), padding: (1, 0), groups: 2),
            Case(x: [2, 3, 5, 5], w: [3, 1, 3, 3], padding: (1, 1), groups: 3),
            Case(x: [2, 5, 4, 3], w: [3, 5, 1, 1]),
            Case(x: [1, 1, 1, 1], w: [1, 1, 1, 1]),
        ]
        for (k, c) in cases.enumerated() {
            let x = Tensor.randn(c.x, dtype: .float64, generator: Generator(seed: UInt64(k + 1)))
            let w = Tensor.randn(c.w, dtype: .float64, generator: Generator(seed: UInt64(k + 100)))
            let b = c.bias ? Tensor.randn([c.w[0]], dtype: .float64, generator: Generator(seed: UInt64(k + 200))) : nil
            let y = x.conv2d(w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
            let expected = directConv2d(x.doubles(), c.x, w.doubles(), c.w, b?.doubles(),
                                        stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
            XCTAssertEqual(y.shape, try ShapeRules.conv2dOutputShape(input: c.x, weight: c.w, stride: c.stride, padding: c.padding,
                                                                     dilation: c.dilation, groups: c.groups))
            assertAllClose(y.doubles(), expected, tol: 1e-12, "case \(k)")
            // Float32 agrees too.
            let y32 = x.to(.float32).conv2d(w.to(.float32), bias: b?.to(.float32), stride: c.stride, padding: c.padding,
                                             dilation: c.dilation, groups: c.groups)
            XCTAssertEqual(y32.dtype, .float32)
            assertAllClose(y32.doubles(), expected, tol: 1e-4, "case \(k) f32")
        }
    }

    func testConv2dNonContiguousInputs() {
        // An NHWC buffer permuted to NCHW, and a weight transposed in its spatial dims.
        let nhwc = Tensor.randn([2, 5, 6, 3], dtype: .float64, generator: Generator(seed: 3))
        let x = nhwc.permuted([0, 3, 1, 2])
        XCTAssertFalse(x.isContiguous)
        let w = Tensor.randn([4, 3, 2, 3], dtype: .float64, generator: Generator(seed: 4)).transposed(2, 3)
        let y = x.conv2d(w, padding: (1, 1))
        let expected = directConv2d(x.doubles(), x.shape, w.doubles(), w.shape, nil,
                                    stride: (1, 1), padding: (1, 1), dilation: (1, 1), groups: 1)
        assertAllClose(y.doubles(), expected, tol: 1e-12, "non-contiguous")
    }

    func testConv2dEmptyBatch() {
        let x = Tensor.zeros([0, 3, 5, 5]).requiringGrad()
        let w = Tensor.randn([2, 3, 3, 3]).requiringGrad()
        let b = Tensor.randn([2]).requiringGrad()
        let y = x.conv2d(w, bias: b, padding: (1, 1))
        XCTAssertEqual(y.shape, [0, 2, 5, 5])
        y.sum().backward()
        XCTAssertEqual(x.grad?.shape, [0, 3, 5, 5])
        XCTAssertEqual(w.grad?.doubles(), [Double](repeating: 0, count: 54))
        XCTAssertEqual(b.grad?.doubles(), [0, 0])
    }

    func testConv2dGradientsMatchDirectAdjoint() {
        // d/dx sum(conv(x, w)) for a ones weight counts how many windows cover each pixel.
        let x = Tensor.randn([1, 1, 4, 4]).requiringGrad()
        let w = Tensor.ones([1, 1, 3, 3]).requiringGrad()
        let b = Tensor.zeros([1]).requiringGrad()
        x.conv2d(w, bias: b, padding: (1, 1)).sum().backward()
        let coverage: [Double] = [4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4]
        XCTAssertEqual(x.grad?.doubles(), coverage)
        XCTAssertEqual(b.grad?.doubles(), [16])
        // Weight gradient: sum of the input shifted by each kernel offset.
        let xv = x.doubles()
        var expected = [Double](repeating: 0, count: 9)
        for p in 0..<3 {
            for q in 0..<3 {
                for i in 0..<4 {
                    for j in 0..<4 {
                        let ih = i - 1 + p, iw = j - 1 + q
                        if ih >= 0 && ih < 4 && iw >= 0 && iw < 4 { expected[p * 3 + q] += xv[ih * 4 + iw] }
                    }
                }
            }
        }
        assertAllClose(w.grad!.doubles(), expected, tol: 1e-5, "weight grad")
    }

    func testConv2dShapeErrors() {
        func message(_ body: () throws(TensorError) -> [Int]) -> String {
            do { _ = try body(); return "no error" } catch { return error.description }
        }
        XCTAssertEqual(message { () throws(TensorError) in try ShapeRules.conv2dOutputShape(input: [2, 3, 8, 8], weight: [4, 2, 3, 3]) },
                       "conv2d: input [2, 3, 8, 8] has 3 channels, weight [4, 2, 3, 3] expects 2 x groups 1")
        XCTAssertEqual(message { () throws(TensorError) in try ShapeRules.conv2dOutputShape(input: [3, 8, 8], weight: [4, 3, 3, 3]) },
                       "conv2d: input [3, 8, 8] must be 4-D [N, C, H, W]")
        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: [1, 4, 8, 8], weight: [3, 2, 3, 3], groups: 2) },
                       "conv2d: weight [3, 2, 3, 3] has 3 output channels, not divisible by groups 2")
        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: [1, 3, 8, 8], weight: [4, 3, 3, 3], bias: [3]) },
                       "conv2d: bias [3] does not match weight [4, 3, 3, 3]: expected [4]")
        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: [1, 3, 4, 4], weight: [4, 3, 3, 3], dilation: (2, 2)) },
                       "conv2d: input [1, 3, 4, 4] padded to 4x4 is smaller than the kernel 5x5 (weight [4, 3, 3, 3], dilation (2, 2))")
        XCTAssertTrue(message { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: [1, 3, 8, 8], weight: [4, 3, 3, 3], stride: (0, 1)) }.contains("stride (0, 1) must be positive"))
        XCTAssertTrue(message { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: [1, 3, 8, 8], weight: [4, 3, 3, 3], padding: (-1, 0)) }.contains("padding (-1, 0)"))
        XCTAssertEqual(try ShapeRules.conv2dOutputShape(input: [10, 3, 224, 224], weight: [64, 3, 11, 11], stride: (4, 4), padding: (2, 2)),
                       [10, 64, 55, 55])

        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.pool2dOutputShape(input: [1, 2, 8, 8], kernel: (3, 3), padding: (2, 2), op: "maxPool2d") },
                       "maxPool2d: padding (2, 2) must be between 0 and half the kernel (3, 3)")
        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.pool2dOutputShape(input: [1, 2, 2, 2], kernel: (3, 3), op: "avgPool2d") },
                       "avgPool2d: input [1, 2, 2, 2] padded to 2x2 is smaller than the kernel 3x3")
        XCTAssertEqual(message { () throws(TensorError) in
            try ShapeRules.pool2dOutputShape(input: [8, 8], kernel: (2, 2), op: "maxPool2d") },
                       "maxPool2d: input [8, 8] must be 4-D [N, C, H, W] or 3-D [C, H, W]")
        XCTAssertEqual(try ShapeRules.pool2dOutputShape(input: [1, 96, 55, 55], kernel: (3, 3), stride: (2, 2), op: "maxPool2d"), [1, 96, 27, 27])
        XCTAssertEqual(try ShapeRules.pool2dOutputShape(input: [3, 6, 6], kernel: (3, 3), stride: (2, 2), ceilMode: true, op: "maxPool2d"), [3, 3, 3])
    }

    func testMaxPool2dValuesAndIndices() throws {
        let x = try Tensor([1, 5, 2, 0,
                            3, 4, 8, 7,
                            -1, -2, 6, 6,
                            -3, 9, 6, 2].map(Float.init), shape: [1, 1, 4, 4])
        let (v, i) = x.maxPool2dWithIndices(kernel: (2, 2))
        XCTAssertEqual(v.shape, [1, 1, 2, 2])
        XCTAssertEqual(v.scalars(as: Float.self), [5, 8, 9, 6])
        XCTAssertEqual(i.dtype, .int64)
        XCTAssertEqual(i.scalars(as: Int64.self), [1, 6, 13, 10])
        // Overlapping 3x3 stride 2 with padding 1.
        let p = x.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        XCTAssertEqual(p.scalars(as: Float.self), [5, 8, 9, 9])
        // Gradient flows to the winners only.
        let xg = x.requiringGrad()
        xg.maxPool2d(kernel: (2, 2)).sum().backward()
        XCTAssertEqual(xg.grad?.scalars(as: Float.self), [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])
        // 3-D input and stride defaulting to the kernel.
        let x3 = x.reshaped([1, 4, 4])
        XCTAssertEqual(x3.maxPool2d(kernel: (2, 2)).shape, [1, 2, 2])
        XCTAssertEqual(x3.maxPool2d(kernel: (2, 2)).scalars(as: Float.self), [5, 8, 9, 6])
    }

    func testAvgPool2dValues() throws {
        let x = try Tensor((1...16).map(Double.init), shape: [1, 1, 4, 4])
        XCTAssertEqual(x.avgPool2d(kernel: (2, 2)).doubles(), [3.5, 5.5, 11.5, 13.5])
        // Padding 1, 3x3 stride 2: corner window has 4 real elements of 9.
        let inc = x.avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        let exc = x.avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false)
        XCTAssertEqual(inc.shape, [1, 1, 2, 2])
        XCTAssertEqual(inc.doubles()[0], (1 + 2 + 5 + 6) / 9, accuracy: 1e-12)
        XCTAssertEqual(exc.doubles()[0], (1 + 2 + 5 + 6) / 4, accuracy: 1e-12)
        XCTAssertEqual(exc.doubles()[3], (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9, accuracy: 1e-12)
        // Gradient of the sum of a non-overlapping average is 1/4 everywhere.
        let xg = x.requiringGrad()
        xg.avgPool2d(kernel: (2, 2)).sum().backward()
        XCTAssertEqual(xg.grad?.doubles(), [Double](repeating: 0.25, count: 16))
        // Empty batch.
        XCTAssertEqual(Tensor.zeros([0, 3, 4, 4]).avgPool2d(kernel: (2, 2)).shape, [0, 3, 2, 2])
        XCTAssertEqual(Tensor.zeros([0, 3, 4, 4]).maxPool2d(kernel: (2, 2)).shape, [0, 3, 2, 2])
    }

    func testPoolingNonContiguousInputMatchesContiguous() {
        // An NHWC buffer viewed as NCHW: pooling must read through the strides.
        let nhwc = Tensor.randn([2, 7, 6, 3], dtype: .float64, generator: Generator(seed: 12))
        let x = nhwc.permuted([0, 3, 1, 2])
        XCTAssertFalse(x.isContiguous)
        let dense = x.contiguous()
        XCTAssertEqual(x.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)).doubles(),
                       dense.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)).doubles())
        XCTAssertEqual(x.avgPool2d(kernel: (2, 3), stride: (1, 2), padding: (1, 1), countIncludePad: false).doubles(),
                       dense.avgPool2d(kernel: (2, 3), stride: (1, 2), padding: (1, 1), countIncludePad: false).doubles())
        XCTAssertEqual(x.maxPool2dWithIndices(kernel: (2, 2)).indices.scalars(as: Int64.self),
                       dense.maxPool2dWithIndices(kernel: (2, 2)).indices.scalars(as: Int64.self))
    }

    func testHalfPrecisionCloseToFloat32() {
        let x = Tensor.randn([2, 4, 6, 6], generator: Generator(seed: 9))
        let w = Tensor.randn([6, 2, 3, 3], std: 0.3, generator: Generator(seed: 10))
        let b = Tensor.randn([6], generator: Generator(seed: 11))
        let ref = x.conv2d(w, bias: b, stride: (1, 2), padding: (1, 1), groups: 2)
        let refMax = ref.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        let refAvg = ref.avgPool2d(kernel: (2, 2))
        for (dtype, tol) in [(DType.float16, 2e-2), (DType.bfloat16, 8e-2)] {
            let y = x.to(dtype).conv2d(w.to(dtype), bias: b.to(dtype), stride: (1, 2), padding: (1, 1), groups: 2)
            XCTAssertEqual(y.dtype, dtype)
            assertAllClose(y.doubles(), ref.doubles(), tol: tol, "conv2d \(dtype)")
            assertAllClose(y.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)).doubles(), refMax.doubles(), tol: tol, "maxPool2d \(dtype)")
            assertAllClose(y.avgPool2d(kernel: (2, 2)).doubles(), refAvg.doubles(), tol: tol, "avgPool2d \(dtype)")

            // Gradients in half precision are close to Float32's.
            let (_, g16) = valueAndGrad(of: [x.to(dtype), w.to(dtype)]) { t in
                t[0].conv2d(t[1], padding: (1, 1), groups: 2).avgPool2d(kernel: (2, 2)).sum()
            }
            let (_, g32) = valueAndGrad(of: [x, w]) { t in t[0].conv2d(t[1], padding: (1, 1), groups: 2).avgPool2d(kernel: (2, 2)).sum() }
            XCTAssertEqual(g16[0].dtype, dtype)
            assertAllClose(g16[0].doubles(), g32[0].doubles(), tol: tol, "input grad \(dtype)")
            assertAllClose(g16[1].doubles(), g32[1].doubles(), tol: 4 * tol, "weight grad \(dtype)")
        }
    }
    /// Half conv2d under a small workspace budget runs chunk by chunk (one image at a time
    /// here): the same values as the whole-batch call up to Float32 rounding of the weight
    /// gradient's grouping, and a lower peak (no whole-batch Float32 copies).
    func testHalfConvChunkedEqualsWholeBatchWithLessMemory() {
        let saved = Conv2dPlan.budgetBytes
        defer { Conv2dPlan.budgetBytes = saved }
        let x32 = Tensor.randn([6, 8, 10, 10], generator: Generator(seed: 21))
        let w32 = Tensor.randn([8, 8, 3, 3], std: 0.2, generator: Generator(seed: 22))
        let b32 = Tensor.randn([8], generator: Generator(seed: 23))
        for dtype in [DType.float16, .bfloat16] {
            let x = x32.to(dtype), w = w32.to(dtype), b = b32.to(dtype)
            let gOut = Tensor.randn([6, 8, 10, 10], generator: Generator(seed: 24)).to(dtype)
            func run(budget: Int) -> (y: Tensor, gx: Tensor, gw: Tensor, gb: Tensor, peak: Int) {
                Conv2dPlan.budgetBytes = budget
                Memory.resetPeak()
                let start = Memory.stats().current
                let (y, g) = valueAndGrad(of: [x, w, b]) { t in (t[0].conv2d(t[1], bias: t[2], padding: (1, 1)) * gOut).sum() }
                let peak = Memory.stats().peak - start
                let yy = x.conv2d(w, bias: b, padding: (1, 1))
                _ = y
                return (yy, g[0], g[1], g[2], peak)
            }
            let whole = run(budget: 64 << 20)
            let chunked = run(budget: 1)  // one image per chunk
            XCTAssertEqual(chunked.y.dtype, dtype)
            XCTAssertEqual(chunked.gx.dtype, dtype)
            // Forward and input gradient: each element is one Float32 sum rounded once.
            let ulp = dtype == .float16 ? 1e-3 : 8e-3
            assertAllClose(chunked.y.doubles(), whole.y.doubles(), tol: ulp, "forward \(dtype)")
            assertAllClose(chunked.gx.doubles(), whole.gx.doubles(), tol: ulp, "input grad \(dtype)")
            assertAllClose(chunked.gw.doubles(), whole.gw.doubles(), tol: 4 * ulp, "weight grad \(dtype)")
            assertAllClose(chunked.gb.doubles(), whole.gb.doubles(), tol: 4 * ulp, "bias grad \(dtype)")
            // Whole-batch Float32 copies of x, g and gx are 3 x 6 x 3.2 KB = 57.6 KB more.
            XCTAssertLessThan(chunked.peak + 40_000, whole.peak, "chunked peak \(chunked.peak) B vs whole-batch \(whole.peak) B (\(dtype))")
        }
    }
}
