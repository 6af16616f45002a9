import XCTest
@testable import TensorKernels

/// Deterministic pseudo-random numbers for kernel tests (SplitMix64).
struct ConvPoolRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 52) - 1 }
    mutating func array(_ n: Int) -> [Double] { (0..<n).map { _ in uniform() } }
}

/// One convolution configuration and its direct (seven nested loops) reference.
struct ConvCase: CustomStringConvertible {
    var n: Int, c: Int, h: Int, w: Int, o: Int
    var kernel: (Int, Int)
    var stride: (Int, Int) = (1, 1)
    var padding: (Int, Int) = (0, 0)
    var dilation: (Int, Int) = (1, 1)
    var groups: Int = 1

    var description: String {
        "N\(n) C\(c) \(h)x\(w) O\(o) k\(kernel) s\(stride) p\(padding) d\(dilation) g\(groups)"
    }
    var geometry: Conv2dGeometry {
        Conv2dGeometry(channels: c, height: h, width: w, kernel: kernel, stride: stride, padding: padding, dilation: dilation)
    }
    var cg: Int { c / groups }
    var og: Int { o / groups }
    var outH: Int { (h + 2 * padding.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1 }
    var outW: Int { (w + 2 * padding.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1 }
    var inputCount: Int { n * c * h * w }
    var weightCount: Int { o * cg * kernel.0 * kernel.1 }
    var outputCount: Int { n * o * outH * outW }

    /// Visits every (input index, weight index, output index) triple that the
    /// convolution multiplies, straight from the definition.
    func forEachTerm(_ body: (Int, Int, Int) -> Void) {
        for b in 0..<n {
            for oc in 0..<o {
                let g = oc / og
                for i in 0..<outH {
                    for j in 0..<outW {
                        let yi = ((b * o + oc) * outH + i) * outW + j
                        for cc in 0..<cg {
                            for p in 0..<kernel.0 {
                                let ih = i * stride.0 - padding.0 + p * dilation.0
                                if ih < 0 || ih >= h { continue }
                                for q in 0..<kernel.1 {
                                    let iw = j * stride.1 - padding.1 + q * dilation.1
                                    if iw < 0 || iw >= w { continue }
                                    let xi = ((b * c + g * cg + cc) * h + ih) * w + iw
                                    let wi = ((oc * cg + cc) * kernel.0 + p) * kernel.1 + q
                                    body(xi, wi, yi)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func naiveForward(_ x: [Double], _ wt: [Double], _ bias: [Double]?) -> [Double] {
        var y = [Double](repeating: 0, count: outputCount)
        if let bias {
            for yi in 0..<outputCount { y[yi] = bias[(yi / (outH * outW)) % o] }
        }
        forEachTerm { xi, wi, yi in y[yi] += x[xi] * wt[wi] }
        return y
    }

    func naiveGradInput(_ gy: [Double], _ wt: [Double]) -> [Double] {
        var gx = [Double](repeating: 0, count: inputCount)
        forEachTerm { xi, wi, yi in gx[xi] += gy[yi] * wt[wi] }
        return gx
    }

    func naiveGradWeight(_ x: [Double], _ gy: [Double]) -> [Double] {
        var gw = [Double](repeating: 0, count: weightCount)
        forEachTerm { xi, wi, yi in gw[wi] += gy[yi] * x[xi] }
        return gw
    }
}

func assertClose(_ a: [Double], _ b: [Double], tol: Double, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(message): count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= tol * max(1, abs(b[i]))) {
        XCTFail("\(message): element \(i): \(a[i]) vs expected \(b[i])", file: file, line: line)
        return
    }
}

final class ConvTests: XCTestCase {
    static let cases: [ConvCase] = [
        ConvCase(n: 2, c: 3, h: 7, w: 6, o: 4, kernel: (3, 3)),
        ConvCase(n: 2, c: 3, h: 9, w: 8, o: 5, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        ConvCase(n: 1, c: 2, h: 9, w: 10, o: 3, kernel: (3, 3), padding: (2, 1), dilation: (2, 2)),
        ConvCase(n: 2, c: 4, h: 6, w: 7, o: 6, kernel: (3, 2), stride: (1, 2), padding: (1, 0), groups: 2),
        ConvCase(n: 2, c: 3, h: 5, w: 5, o: 3, kernel: (3, 3), padding: (1, 1), groups: 3),          // depthwise
        ConvCase(n: 1, c: 3, h: 5, w: 6, o: 6, kernel: (3, 3), stride: (2, 1), padding: (1, 1), groups: 3), // depthwise x2
        ConvCase(n: 2, c: 5, h: 4, w: 3, o: 3, kernel: (1, 1)),                                       // pointwise path
        ConvCase(n: 2, c: 4, h: 5, w: 5, o: 2, kernel: (1, 1), groups: 2),                            // grouped pointwise
        ConvCase(n: 1, c: 3, h: 7, w: 7, o: 2, kernel: (1, 1), stride: (2, 2)),                       // 1x1 strided: im2col
        ConvCase(n: 1, c: 2, h: 5, w: 5, o: 2, kernel: (1, 1), padding: (1, 1)),                      // 1x1 padded
        ConvCase(n: 0, c: 3, h: 5, w: 5, o: 2, kernel: (3, 3), padding: (1, 1)),                      // empty batch
        ConvCase(n: 0, c: 2, h: 3, w: 3, o: 2, kernel: (1, 1)),
        ConvCase(n: 1, c: 1, h: 1, w: 1, o: 1, kernel: (1, 1)),
        ConvCase(n: 1, c: 1, h: 5, w: 5, o: 2, kernel: (5, 5)),                                       // 1x1 output
        ConvCase(n: 1, c: 1, h: 2, w: 2, o: 1, kernel: (3, 3), padding: (1, 1)),                      // kernel > input
        ConvCase(n: 3, c: 2, h: 11, w: 9, o: 3, kernel: (2, 4), stride: (3, 1), padding: (0, 2), dilation: (1, 3)),
        ConvCase(n: 1, c: 2, h: 8, w: 8, o: 2, kernel: (3, 3), stride: (4, 4), padding: (1, 1)),      // stride > kernel
        ConvCase(n: 1, c: 16, h: 32, w: 32, o: 8, kernel: (3, 3), padding: (1, 1)),                  // parallel im2col
        // "Same" convolutions (output width = input width, stride 1): the contiguous-run paths.
        ConvCase(n: 5, c: 3, h: 6, w: 7, o: 4, kernel: (3, 5), padding: (1, 2)),
        ConvCase(n: 3, c: 2, h: 7, w: 5, o: 2, kernel: (3, 3), padding: (2, 2), dilation: (2, 2)),
        ConvCase(n: 2, c: 2, h: 2, w: 2, o: 3, kernel: (5, 5), padding: (2, 2)),                      // taps with no valid row
        ConvCase(n: 4, c: 4, h: 5, w: 6, o: 6, kernel: (3, 3), padding: (1, 1), groups: 2),
        ConvCase(n: 3, c: 1, h: 1, w: 9, o: 2, kernel: (1, 3), padding: (0, 1)),
        ConvCase(n: 5, c: 4, h: 3, w: 4, o: 6, kernel: (1, 1), groups: 2),                            // grouped pointwise, chunks
        ConvCase(n: 7, c: 3, h: 9, w: 9, o: 5, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        ConvCase(n: 4, c: 8, h: 24, w: 24, o: 4, kernel: (3, 3), padding: (1, 1)),                   // images over threads
    ]

    func testIm2colMatchesDefinition() {
        var rng = ConvPoolRNG(seed: 11)
        for cs in Self.cases where cs.n > 0 {
            let g = cs.geometry
            let image = rng.array(cs.c * cs.h * cs.w)
            var col = [Double](repeating: .nan, count: g.colRows * g.colCols)
            image.withUnsafeBufferPointer { ip in col.withUnsafeMutableBufferPointer { cp in
                im2col(ip.baseAddress!, geometry: g, cp.baseAddress!)
            } }
            var expected = [Double](repeating: 0, count: col.count)
            for c in 0..<cs.c {
                for p in 0..<cs.kernel.0 {
                    for q in 0..<cs.kernel.1 {
                        for i in 0..<cs.outH {
                            for j in 0..<cs.outW {
                                let ih = i * cs.stride.0 - cs.padding.0 + p * cs.dilation.0
                                let iw = j * cs.stride.1 - cs.padding.1 + q * cs.dilation.1
                                let row = (c * cs.kernel.0 + p) * cs.kernel.1 + q
                                if ih >= 0 && ih < cs.h && iw >= 0 && iw < cs.w {
                                    expected[row * g.colCols + i * cs.outW + j] = image[(c * cs.h + ih) * cs.w + iw]
                                }
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(g.outH, cs.outH, "\(cs)")
            XCTAssertEqual(g.outW, cs.outW, "\(cs)")
            XCTAssertEqual(col, expected, "im2col \(cs)")
        }
    }

    func testCol2imIsTheAdjointOfIm2col() {
        var rng = ConvPoolRNG(seed: 12)
        for cs in Self.cases where cs.n > 0 {
            let g = cs.geometry
            let col = rng.array(g.colRows * g.colCols)
            let start = rng.array(cs.c * cs.h * cs.w)
            var image = start
            col.withUnsafeBufferPointer { cp in image.withUnsafeMutableBufferPointer { ip in
                col2im(cp.baseAddress!, geometry: g, ip.baseAddress!)
            } }
            // Naive: add every column entry to the pixel it came from (col2im accumulates).
            var expected = start
            for c in 0..<cs.c {
                for p in 0..<cs.kernel.0 {
                    for q in 0..<cs.kernel.1 {
                        for i in 0..<cs.outH {
                            for j in 0..<cs.outW {
                                let ih = i * cs.stride.0 - cs.padding.0 + p * cs.dilation.0
                                let iw = j * cs.stride.1 - cs.padding.1 + q * cs.dilation.1
                                let row = (c * cs.kernel.0 + p) * cs.kernel.1 + q
                                if ih >= 0 && ih < cs.h && iw >= 0 && iw < cs.w {
                                    expected[(c * cs.h + ih) * cs.w + iw] += col[row * g.colCols + i * cs.outW + j]
                                }
                            }
                        }
                    }
                }
            }
            assertClose(image, expected, tol: 1e-12, "col2im \(cs)")
        }
    }

    /// Runs the kernels for one case in `T` under `plan` and returns
    /// (y, gradInput, gradWeight) as Double. The gradients come from the separate entry
    /// points and are checked against the combined `conv2dBackward` (same plan).
    /// Buffers (workspace included) start as NaN with a NaN sentinel past the end, so a
    /// read of unwritten scratch or a write past any buffer shows.
    func runKernels<T: GemmScalar>(_ cs: ConvCase, _: T.Type, x: [Double], w: [Double], bias: [Double]?, gy: [Double],
                                   plan: Conv2dPlan = Conv2dPlan(), file: StaticString = #filePath, line: UInt = #line)
        -> ([Double], [Double], [Double]) {
        let g = cs.geometry
        // One spare element each so empty buffers still have a base address.
        let xt = x.map { T($0) } + [0], wt = w.map { T($0) } + [0], bt = bias.map { $0.map { T($0) } + [0] }, gyt = gy.map { T($0) } + [0]
        var y = [T](repeating: .nan, count: cs.outputCount + 1)
        var gx = [T](repeating: .nan, count: cs.inputCount + 1)
        var gw = [T](repeating: .nan, count: cs.weightCount + 1)
        var gx2 = gx, gw2 = gw
        let wsCount = conv2dWorkspaceCount(geometry: g, outChannels: cs.o, groups: cs.groups, plan: plan)
        var ws = [T](repeating: .nan, count: wsCount + 1)
        xt.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in gyt.withUnsafeBufferPointer { gp in
            ws.withUnsafeMutableBufferPointer { wsp in
                let work = wsCount == 0 ? nil : wsp.baseAddress
                y.withUnsafeMutableBufferPointer { yp in
                    if let bt {
                        bt.withUnsafeBufferPointer { bp in
                            conv2dForward(input: xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!, output: yp.baseAddress!,
                                          batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                          workspace: work)
                        }
                    } else {
                        conv2dForward(input: xp.baseAddress!, weight: wp.baseAddress!, bias: nil, output: yp.baseAddress!,
                                      batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                      workspace: work)
                    }
                }
                gx.withUnsafeMutableBufferPointer { gxp in
                    conv2dBackwardData(gradOutput: gp.baseAddress!, weight: wp.baseAddress!, gradInput: gxp.baseAddress!,
                                       batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                       workspace: work)
                }
                gw.withUnsafeMutableBufferPointer { gwp in
                    conv2dBackwardWeight(input: xp.baseAddress!, gradOutput: gp.baseAddress!, gradWeight: gwp.baseAddress!,
                                         batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                         workspace: work)
                }
                gx2.withUnsafeMutableBufferPointer { gxp in gw2.withUnsafeMutableBufferPointer { gwp in
                    conv2dBackward(input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: gp.baseAddress!,
                                   gradInput: gxp.baseAddress!, gradWeight: gwp.baseAddress!,
                                   batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                   workspace: work)
                } }
            }
        } } }
        XCTAssertTrue(y.last!.isNaN && gx.last!.isNaN && gw.last!.isNaN && gx2.last!.isNaN && gw2.last!.isNaN && ws.last!.isNaN,
                      "kernels wrote past the end: \(cs) \(plan)", file: file, line: line)
        let (gxd, gwd) = (gx.dropLast().map { Double($0) }, gw.dropLast().map { Double($0) })
        assertClose(gx2.dropLast().map { Double($0) }, gxd, tol: 0, "combined gradInput \(cs) \(plan)", file: file, line: line)
        assertClose(gw2.dropLast().map { Double($0) }, gwd, tol: 0, "combined gradWeight \(cs) \(plan)", file: file, line: line)
        return (y.dropLast().map { Double($0) }, gxd, gwd)
    }

    /// Plans worth trying for a batch of `n`: one image per GEMM; chunks of 2 and 3 (which
    /// need not divide the batch), of the whole batch and of more than the batch (clamped);
    /// 2 and 3 workers (more workers than images included), alone and with chunks.
    static func plans(_ n: Int) -> [Conv2dPlan] {
        let chunks = Array(Set([1, 2, 3, max(n, 1), n + 4])).sorted()
        return chunks.map { Conv2dPlan(imagesPerChunk: $0) }
            + [Conv2dPlan(threads: 2), Conv2dPlan(threads: 3), Conv2dPlan(imagesPerChunk: 2, threads: 2)]
    }

    func testConvKernelsMatchDirectLoops() {
        var rng = ConvPoolRNG(seed: 13)
        for cs in Self.cases {
            let x = rng.array(cs.inputCount), w = rng.array(cs.weightCount), gy = rng.array(cs.outputCount)
            let bias = rng.array(cs.o)
            let (ey, egx, egw) = (cs.naiveForward(x, w, bias), cs.naiveGradInput(gy, w), cs.naiveGradWeight(x, gy))
            let eyNoBias = cs.naiveForward(x, w, nil)
            for plan in Self.plans(cs.n) {
                for b in [nil, bias] {
                    let (y, gx, gw) = runKernels(cs, Double.self, x: x, w: w, bias: b, gy: gy, plan: plan)
                    assertClose(y, b == nil ? eyNoBias : ey, tol: 1e-12, "forward \(cs) \(plan) bias \(b != nil)")
                    assertClose(gx, egx, tol: 1e-12, "gradInput \(cs) \(plan)")
                    assertClose(gw, egw, tol: 1e-12, "gradWeight \(cs) \(plan)")
                }
            }
        }
    }

    func testConvKernelsInFloat32() {
        var rng = ConvPoolRNG(seed: 14)
        for cs in [Self.cases[1], Self.cases[3], Self.cases[6], Self.cases[17], Self.cases[18], Self.cases[24]] {
            let x = rng.array(cs.inputCount), w = rng.array(cs.weightCount), gy = rng.array(cs.outputCount), b = rng.array(cs.o)
            for plan in [Conv2dPlan(), Conv2dPlan(imagesPerChunk: 2), Conv2dPlan(imagesPerChunk: cs.n), Conv2dPlan(threads: 2)] {
                let (y, gx, gw) = runKernels(cs, Float.self, x: x, w: w, bias: b, gy: gy, plan: plan)
                assertClose(y, cs.naiveForward(x, w, b), tol: 1e-4, "forward f32 \(cs) \(plan)")
                assertClose(gx, cs.naiveGradInput(gy, w), tol: 1e-4, "gradInput f32 \(cs) \(plan)")
                assertClose(gw, cs.naiveGradWeight(x, gy), tol: 1e-4, "gradWeight f32 \(cs) \(plan)")
            }
        }
    }

    /// The direct Float32 kernel (forced on for every case it applies to, and forced off),
    /// for the forward pass and the input gradient (a direct convolution of the output
    /// gradient by the flipped weight), against the definition under several plans: the
    /// plan's workspace must hold it, and the NaN-filled scratch shows any read of an entry
    /// it did not write.
    func testDirectConvolutionMatchesTheDefinition() {
        var rng = ConvPoolRNG(seed: 16)
        let savedWeightGradient = Conv2dDirect.weightGradient
        defer { Conv2dDirect.policy = .auto; Conv2dDirect.weightGradient = savedWeightGradient }
        let extra = [ConvCase(n: 3, c: 5, h: 9, w: 31, o: 7, kernel: (3, 3), padding: (1, 1)),
                     ConvCase(n: 2, c: 3, h: 7, w: 5, o: 9, kernel: (5, 3), padding: (2, 0), dilation: (1, 2)),
                     ConvCase(n: 4, c: 16, h: 28, w: 28, o: 16, kernel: (3, 3), padding: (1, 1))]
        var directCases = 0
        for cs in Self.cases + extra where cs.n > 0 && cs.o > 0 {
            let applies = Conv2dDirect.applies(cs.geometry, groups: cs.groups)
            if applies { directCases += 1 }
            let x = rng.array(cs.inputCount), w = rng.array(cs.weightCount), gy = rng.array(cs.outputCount), b = rng.array(cs.o)
            let expected = cs.naiveForward(x, w, b), egx = cs.naiveGradInput(gy, w), egw = cs.naiveGradWeight(x, gy)
            // The weight gradient direct (the default) and from im2col + GEMM next to the
            // direct input gradient (the backward then runs the GEMM path for gradWeight only).
            for (policy, directWeight) in [(Conv2dDirectPolicy.always, true), (.always, false), (.never, true)] {
                Conv2dDirect.policy = policy
                Conv2dDirect.weightGradient = directWeight
                for plan in [Conv2dPlan(), Conv2dPlan(imagesPerChunk: 2), Conv2dPlan(threads: 2)] {
                    // Input gradients: the separate entry point and the combined backward (checked equal inside).
                    let (y, gx, gw) = runKernels(cs, Float.self, x: x, w: w, bias: b, gy: gy, plan: plan)
                    let what = "\(policy), direct weight gradient \(directWeight), \(cs) \(plan)"
                    assertClose(y, expected, tol: 1e-4, "forward f32 \(what)")
                    assertClose(gx, egx, tol: 1e-4, "gradInput f32 \(what)")
                    assertClose(gw, egw, tol: 1e-4, "gradWeight f32 \(what)")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(directCases, 5, "too few cases exercise the direct kernel")
        Conv2dDirect.policy = .always
        XCTAssertNotNil(conv2dDirectDataGradientGeometry(ConvCase(n: 1, c: 4, h: 8, w: 8, o: 4, kernel: (3, 3), padding: (1, 1)).geometry,
                                                         outChannels: 4, groups: 1), "a 'same' convolution's input gradient is direct")
        XCTAssertNil(conv2dDirectDataGradientGeometry(ConvCase(n: 1, c: 4, h: 8, w: 8, o: 4, kernel: (3, 3), padding: (3, 3)).geometry,
                                                      outChannels: 4, groups: 1), "padding beyond the kernel's reach has no direct input gradient")
        XCTAssertTrue(Conv2dDirect.preferred(ConvCase(n: 1, c: 16, h: 28, w: 28, o: 16, kernel: (3, 3), padding: (1, 1)).geometry,
                                             outChannels: 16, groups: 1))
        XCTAssertFalse(Conv2dDirect.applies(ConvCase(n: 1, c: 4, h: 8, w: 8, o: 4, kernel: (3, 3), stride: (2, 2)).geometry, groups: 1))
        XCTAssertFalse(Conv2dDirect.applies(ConvCase(n: 1, c: 4, h: 8, w: 8, o: 4, kernel: (3, 3), groups: 2).geometry, groups: 2))
    }

    /// The direct weight gradient on its own: it runs whenever the policy chooses it and the
    /// workspace holds one worker (1, 2 and 3 workers' worth of workspace), overwrites
    /// `gradWeight`, and equals the definition in Double; it declines a workspace one
    /// element short and layers it does not apply to.
    func testDirectWeightGradientMatchesTheDefinition() {
        var rng = ConvPoolRNG(seed: 17)
        let savedWeightGradient = Conv2dDirect.weightGradient
        defer { Conv2dDirect.policy = .auto; Conv2dDirect.weightGradient = savedWeightGradient }
        Conv2dDirect.policy = .always
        Conv2dDirect.weightGradient = true
        let cases = [ConvCase(n: 3, c: 5, h: 9, w: 31, o: 7, kernel: (3, 3), padding: (1, 1)),
                     ConvCase(n: 2, c: 3, h: 7, w: 5, o: 9, kernel: (5, 3), padding: (2, 0), dilation: (1, 2)),
                     ConvCase(n: 5, c: 1, h: 12, w: 12, o: 6, kernel: (5, 5)),
                     ConvCase(n: 1, c: 2, h: 1, w: 1, o: 3, kernel: (3, 3), padding: (1, 1)),
                     ConvCase(n: 4, c: 32, h: 14, w: 14, o: 16, kernel: (3, 3), padding: (1, 1)),
                     // 24 rows of 30: three segments; 21 channels: tiles of 16 and of 8 (3 zero rows).
                     ConvCase(n: 2, c: 2, h: 24, w: 30, o: 21, kernel: (3, 3), padding: (1, 1)),
                     // LeNet-5's layers at a data-parallel rank's batch (28 rows: a 1-row last segment).
                     ConvCase(n: 24, c: 1, h: 28, w: 28, o: 6, kernel: (5, 5), padding: (2, 2)),
                     ConvCase(n: 24, c: 6, h: 14, w: 14, o: 16, kernel: (5, 5))]
        for cs in cases {
            let g = cs.geometry
            XCTAssertTrue(Conv2dDirect.applies(g, groups: 1), "\(cs)")
            let x = rng.array(cs.inputCount), gy = rng.array(cs.outputCount)
            let egw = cs.naiveGradWeight(x, gy)
            let need = Conv2dDirect.weightGradientScratch(g, outChannels: cs.o)
            for workers in [1, 2, 3] {
                let wsCount = need * workers
                let xf = x.map { Float($0) }, gyf = gy.map { Float($0) }
                var ws = [Float](repeating: .nan, count: wsCount)
                var gw = [Float](repeating: .nan, count: cs.weightCount)
                let ran = ws.withUnsafeMutableBufferPointer { wsp in gw.withUnsafeMutableBufferPointer { gwp in
                    conv2dDirectWeightGradientIfChosen(input: xf, gradOutput: gyf, gradWeight: gwp.baseAddress!, batch: cs.n,
                                                       outChannels: cs.o, groups: 1, geometry: g,
                                                       workspace: wsp.baseAddress!, workspaceCount: wsCount)
                } }
                XCTAssertTrue(ran, "direct weight gradient declined \(cs) with \(workers) workers' workspace")
                // Float32 sums of up to n·outH·outW products of numbers in [-1, 1].
                let scale = Double(max(1, cs.n * cs.outH * cs.outW)).squareRoot()
                assertClose(gw.map { Double($0) }, egw, tol: 1e-5 * scale, "direct gradWeight \(cs) workers \(workers)")
            }
            var ws = [Float](repeating: 0, count: need - 1), gw = [Float](repeating: 7, count: cs.weightCount)
            let ran = ws.withUnsafeMutableBufferPointer { wsp in
                conv2dDirectWeightGradientIfChosen(input: x.map { Float($0) }, gradOutput: gy.map { Float($0) }, gradWeight: &gw,
                                                   batch: cs.n, outChannels: cs.o, groups: 1, geometry: g,
                                                   workspace: wsp.baseAddress!, workspaceCount: need - 1)
            }
            XCTAssertFalse(ran, "a workspace one element short must be declined")
            XCTAssertEqual(gw, [Float](repeating: 7, count: cs.weightCount), "a declined call must not write")
        }
        Conv2dDirect.policy = .never
        var ws = [Float](repeating: 0, count: 1 << 16), gw = [Float](repeating: 0, count: 9)
        let cs = ConvCase(n: 1, c: 1, h: 6, w: 6, o: 1, kernel: (3, 3), padding: (1, 1))
        XCTAssertFalse(ws.withUnsafeMutableBufferPointer { wsp in
            conv2dDirectWeightGradientIfChosen(input: [Float](repeating: 1, count: 36), gradOutput: [Float](repeating: 1, count: 36),
                                               gradWeight: &gw, batch: 1, outChannels: 1, groups: 1, geometry: cs.geometry,
                                               workspace: wsp.baseAddress!, workspaceCount: 1 << 16)
        }, "policy .never must decline")
    }

    /// `conv2dBackward` with only one of the two gradients asked for leaves the other
    /// buffer alone and needs only the operand that gradient reads.
    func testCombinedBackwardComputesOnlyWhatIsAsked() {
        var rng = ConvPoolRNG(seed: 15)
        let cs = ConvCase(n: 5, c: 4, h: 6, w: 6, o: 6, kernel: (3, 3), padding: (1, 1), groups: 2)
        let g = cs.geometry
        let x = rng.array(cs.inputCount), w = rng.array(cs.weightCount), gy = rng.array(cs.outputCount)
        for plan in [Conv2dPlan(), Conv2dPlan(imagesPerChunk: 2), Conv2dPlan(imagesPerChunk: 5), Conv2dPlan(threads: 2)] {
            var ws = [Double](repeating: .nan, count: conv2dWorkspaceCount(geometry: g, outChannels: cs.o, groups: cs.groups, plan: plan))
            var gx = [Double](repeating: .nan, count: cs.inputCount)
            var gw = [Double](repeating: .nan, count: cs.weightCount)
            ws.withUnsafeMutableBufferPointer { wsp in
                gx.withUnsafeMutableBufferPointer { gxp in
                    conv2dBackward(input: nil, weight: w, gradOutput: gy, gradInput: gxp.baseAddress!, gradWeight: nil,
                                   batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                   workspace: wsp.baseAddress)
                }
                gw.withUnsafeMutableBufferPointer { gwp in
                    conv2dBackward(input: x, weight: nil, gradOutput: gy, gradInput: nil, gradWeight: gwp.baseAddress!,
                                   batch: cs.n, outChannels: cs.o, groups: cs.groups, geometry: g, plan: plan,
                                   workspace: wsp.baseAddress)
                }
            }
            assertClose(gx, cs.naiveGradInput(gy, w), tol: 1e-12, "gradInput only, \(plan)")
            assertClose(gw, cs.naiveGradWeight(x, gy), tol: 1e-12, "gradWeight only, \(plan)")
        }
    }

    func testPlanFitsTheBudgetAndBalancesTheBatch() {
        // convnet-bn's second layer: K = 288, O = 32, P = 784 → (288 + 32)·784·4 bytes per image.
        let g = Conv2dGeometry(channels: 32, height: 28, width: 28, kernel: (3, 3), padding: (1, 1))
        let perImage = (288 + 32) * 784
        XCTAssertEqual(conv2dWorkspaceCount(geometry: g, outChannels: 32, groups: 1, plan: Conv2dPlan(imagesPerChunk: 3)), 3 * perImage)
        func plan(_ batch: Int, _ budget: Int, threads: Int = 1) -> Conv2dPlan {
            Conv2dPlan(geometry: g, outChannels: 32, groups: 1, batch: batch, elementSize: 4, budgetBytes: budget, maxThreads: threads)
        }
        for (batch, budget) in [(128, 4 << 20), (128, 16 << 20), (10, 1 << 30), (7, 3 * perImage * 4), (128, 1), (1, 1 << 30), (0, 1 << 30)] {
            let p = plan(batch, budget)
            XCTAssertEqual(p.threads, 1, "a large layer runs its GEMMs on OpenBLAS's threads")
            XCTAssertGreaterThanOrEqual(p.imagesPerChunk, 1, "batch \(batch) budget \(budget)")
            XCTAssertLessThanOrEqual(p.imagesPerChunk, max(batch, 1), "batch \(batch) budget \(budget)")
            if p.imagesPerChunk > 1 {
                XCTAssertLessThanOrEqual(conv2dWorkspaceCount(geometry: g, outChannels: 32, groups: 1, plan: p) * 4, budget)
            }
            // Balanced: the chunks of the batch differ by less than the chunk count.
            if batch > 0 {
                let chunks = (batch + p.imagesPerChunk - 1) / p.imagesPerChunk
                XCTAssertLessThan(chunks * p.imagesPerChunk - batch, chunks, "batch \(batch) budget \(budget): \(p)")
            }
        }
        XCTAssertEqual(plan(10, 1 << 30).imagesPerChunk, 10)
        XCTAssertEqual(plan(7, 3 * perImage * 4).imagesPerChunk, 3)
        XCTAssertEqual(plan(8, 3 * perImage * 4).imagesPerChunk, 3)
        XCTAssertEqual(plan(9, 5 * perImage * 4).imagesPerChunk, 5)   // 5 + 4, not 5 + 5
        XCTAssertEqual(plan(128, 1), Conv2dPlan())
        XCTAssertEqual(plan(1, 1 << 30), Conv2dPlan())

        // Batch split over 2 workers (the default with 2 cores): each worker takes half the
        // batch in chunks that together fit the budget.
        XCTAssertTrue(Conv2dPlan.batchSplit)
        let split = plan(128, 4 << 20, threads: 2)
        XCTAssertEqual(split.threads, 2)
        XCTAssertLessThanOrEqual(conv2dWorkspaceCount(geometry: g, outChannels: 32, groups: 1, plan: split) * 4, 4 << 20)
        let share = 64, chunks = (share + split.imagesPerChunk - 1) / split.imagesPerChunk
        XCTAssertLessThan(chunks * split.imagesPerChunk - share, chunks, "\(split)")
        XCTAssertEqual(plan(1, 4 << 20, threads: 2), Conv2dPlan(), "one image: nothing to split")
        // A budget below two images' scratch keeps one worker (the limit is not doubled).
        XCTAssertEqual(plan(128, 2 * perImage * 4 - 1, threads: 2).threads, 1)
        XCTAssertEqual(plan(128, 2 * perImage * 4, threads: 2).threads, 2)

        // LeNet's layers: per-image GEMMs of at most 2^18 multiply-adds go image-parallel.
        let lenet1 = Conv2dGeometry(channels: 1, height: 28, width: 28, kernel: (5, 5), padding: (2, 2))   // 6·25·784
        let p1 = Conv2dPlan(geometry: lenet1, outChannels: 6, groups: 1, batch: 64, elementSize: 4, maxThreads: 2)
        XCTAssertEqual(p1, Conv2dPlan(imagesPerChunk: 1, threads: 2))
        XCTAssertEqual(Conv2dPlan(geometry: lenet1, outChannels: 6, groups: 1, batch: 64, elementSize: 4, maxThreads: 1).threads, 1)
        XCTAssertEqual(Conv2dPlan(geometry: lenet1, outChannels: 6, groups: 1, batch: 1, elementSize: 4, maxThreads: 2), Conv2dPlan())
        XCTAssertEqual(conv2dWorkspaceCount(geometry: lenet1, outChannels: 6, groups: 1, plan: p1), 2 * 25 * 784 + 6 * 25)
    }

    /// im2col / col2im with a row stride wider than one image write and read only their
    /// own columns (how the kernels lay several images side by side).
    func testIm2colAndCol2imWithLeadingDimension() {
        var rng = ConvPoolRNG(seed: 16)
        for cs in [Self.cases[1], Self.cases[2], Self.cases[18], Self.cases[19]] {
            let g = cs.geometry
            let (rows, P) = (g.colRows, g.colCols)
            let image = rng.array(cs.c * cs.h * cs.w)
            var dense = [Double](repeating: .nan, count: rows * P)
            image.withUnsafeBufferPointer { ip in dense.withUnsafeMutableBufferPointer { cp in
                im2col(ip.baseAddress!, geometry: g, cp.baseAddress!)
            } }
            let ld = 3 * P + 1, offset = P + 1
            var wide = [Double](repeating: .nan, count: rows * ld)
            image.withUnsafeBufferPointer { ip in wide.withUnsafeMutableBufferPointer { cp in
                im2col(ip.baseAddress!, geometry: g, cp.baseAddress! + offset, ld: ld)
            } }
            for r in 0..<rows {
                for j in 0..<ld {
                    let v = wide[r * ld + j]
                    if j >= offset && j < offset + P {
                        XCTAssertEqual(v, dense[r * P + j - offset], "im2col ld \(cs) row \(r) col \(j)")
                    } else {
                        XCTAssertTrue(v.isNaN, "im2col ld \(cs) wrote outside its columns at row \(r) col \(j)")
                    }
                }
            }
            let col = rng.array(rows * P)
            var widecol = [Double](repeating: 1e300, count: rows * ld)
            for r in 0..<rows { for j in 0..<P { widecol[r * ld + offset + j] = col[r * P + j] } }
            var a = [Double](repeating: 0, count: image.count), b = a
            col.withUnsafeBufferPointer { cp in a.withUnsafeMutableBufferPointer { ap in col2im(cp.baseAddress!, geometry: g, ap.baseAddress!) } }
            widecol.withUnsafeBufferPointer { cp in b.withUnsafeMutableBufferPointer { bp in
                col2im(cp.baseAddress! + offset, geometry: g, bp.baseAddress!, ld: ld)
            } }
            assertClose(b, a, tol: 0, "col2im ld \(cs)")
        }
    }

    func testGeometryOutputSizesAndWorkspace() {
        XCTAssertEqual(Conv2dGeometry.outputSize(input: 224, kernel: 11, stride: 4, padding: 2, dilation: 1), 55)
        XCTAssertEqual(Conv2dGeometry.outputSize(input: 5, kernel: 3, stride: 1, padding: 0, dilation: 2), 1)
        XCTAssertEqual(Conv2dGeometry.outputSize(input: 4, kernel: 3, stride: 1, padding: 0, dilation: 2), 0)
        let g = Conv2dGeometry(channels: 4, height: 6, width: 6, kernel: (3, 3), padding: (1, 1))
        XCTAssertEqual(conv2dWorkspaceCount(geometry: g, outChannels: 6, groups: 2), 2 * 9 * 36)
        XCTAssertEqual(conv2dWorkspaceCount(geometry: g, outChannels: 6, groups: 2, plan: Conv2dPlan(imagesPerChunk: 4)), 4 * (2 * 9 + 3) * 36)
        XCTAssertEqual(conv2dWorkspaceCount(geometry: g, outChannels: 6, groups: 2, plan: Conv2dPlan(threads: 3)), 3 * 2 * 9 * 36 + 2 * 6 * 18)
        XCTAssertFalse(g.isPointwise)
        let p = Conv2dGeometry(channels: 4, height: 6, width: 6, kernel: (1, 1))
        XCTAssertTrue(p.isPointwise)
        XCTAssertEqual(conv2dWorkspaceCount(geometry: p, outChannels: 2, groups: 1), 0)
        XCTAssertEqual(conv2dWorkspaceCount(geometry: p, outChannels: 2, groups: 1, plan: Conv2dPlan(imagesPerChunk: 3)), 3 * (4 + 2) * 36)
        XCTAssertEqual(conv2dWorkspaceCount(geometry: p, outChannels: 2, groups: 1, plan: Conv2dPlan(threads: 2)), 2 * 4)
    }
}
