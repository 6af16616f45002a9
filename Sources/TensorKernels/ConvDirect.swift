import Dispatch

// Direct stride-1 convolution for Float32 layers with few channels (see `conv2dForward`).
//
// im2col + GEMM writes a column matrix kh·kw times the image, OpenBLAS then packs it
// again and zeroes its output before accumulating: for a 16-channel 3x3 layer those
// passes cost as much as the multiply-adds (the GEMM is [16 x 144] x [144 x 784] per
// image, too thin for the BLAS kernel to pay off). The direct kernel instead reads a
// zero-padded copy of the image (about one image in size) and keeps a 4-output-channel x
// 24-pixel block of results in twelve AVX registers while it runs over every input channel
// and kernel tap: one load of 24 input pixels feeds four fused multiply-adds each.
//
// Flat-plane trick: with stride 1, output pixel (oh, ow) reads padded pixels
// (oh + i·dh, ow + j·dw), i.e. flat index t + i·dh·Wp + j·dw with t = oh·Wp + ow on the
// padded width Wp. So a kernel tap is one constant offset over the whole plane, and the
// kernel walks the plane in runs of 24 flat positions regardless of row ends; positions
// with ow >= outW (the right-hand padding columns) are computed and dropped.

/// When `conv2dForward` uses the direct kernel.
public enum Conv2dDirectPolicy: Sendable, Equatable {
    /// Float32, groups 1, stride 1, not pointwise, and a layer shape where it measured faster.
    case auto
    /// Whenever it applies (Float32, groups 1, stride 1, not pointwise): for tests and benchmarks.
    case always
    /// Never: im2col + GEMM only.
    case never
}

public enum Conv2dDirect {
    /// The policy `conv2dForward` follows (default `.auto`). Set before kernels run.
    nonisolated(unsafe) public static var policy: Conv2dDirectPolicy = .auto

    /// Whether layers the policy chooses also take their weight gradient from the direct
    /// kernel (default; `loom train|bench|train-bench --no-direct-weight-gradient` for
    /// im2col + GEMM). Its sums run in another order than OpenBLAS's, so results differ
    /// from the GEMM path by rounding (a few ulps of the largest entry). Set before kernels run.
    nonisolated(unsafe) public static var weightGradient = true

    /// Output channels computed together (registers per pixel run).
    @usableFromInline static let channelBlock = 4
    /// Flat output positions computed together: three 8-lane vectors.
    @usableFromInline static let run = 24

    /// Whether the direct kernel can compute this convolution (any size).
    @inlinable
    public static func applies(_ g: Conv2dGeometry, groups: Int) -> Bool {
        groups == 1 && g.strideH == 1 && g.strideW == 1 && !g.isPointwise && g.channels > 0
    }

    /// Whether `.auto` picks it: few output channels and a short reduction, where the GEMM
    /// is thin. Measured faster (`loom bench --filter conv2d --conv-direct always|never`,
    /// BENCHMARKS.md) on LeNet's, convnet-bn's 32-channel and DeepConvNet's layers; the
    /// 64-channel and 1024-row bounds extrapolate from those (convnet-bn's 64-channel layers
    /// are inside them; AlexNet's 256/384-channel layers are not).
    @inlinable
    public static func preferred(_ g: Conv2dGeometry, outChannels: Int, groups: Int) -> Bool {
        applies(g, groups: groups) && outChannels <= 64 && g.colRows <= 1024
    }

    /// Padded width, plane stride and flat-run geometry of one image.
    @usableFromInline
    struct Layout {
        @usableFromInline var wp: Int, hp: Int, plane: Int, positions: Int, runs: Int, packedWeights: Int
        @inlinable
        init(_ g: Conv2dGeometry, outChannels: Int) {
            wp = g.width + 2 * g.padW
            hp = g.height + 2 * g.padH
            // The last run reads up to 23 positions past the plane plus the widest tap.
            plane = hp * wp + (g.kernelW - 1) * g.dilationW + Conv2dDirect.run
            positions = g.outH * wp
            runs = (positions + Conv2dDirect.run - 1) / Conv2dDirect.run
            let blocks = (outChannels + Conv2dDirect.channelBlock - 1) / Conv2dDirect.channelBlock
            packedWeights = blocks * Conv2dDirect.channelBlock * g.colRows
        }

        /// Offsets on the padded planes of every (channel, tap) entry, in weight order
        /// (`c·plane + i·dh·Wp + j·dw`), followed by zeros up to `count` entries.
        @inlinable
        func entryOffsets(_ g: Conv2dGeometry, count: Int) -> [Int] {
            var offsets = [Int](repeating: 0, count: max(count, g.colRows))
            let taps = g.kernelH * g.kernelW
            for c in 0..<g.channels {
                for i in 0..<g.kernelH {
                    for j in 0..<g.kernelW { offsets[c * taps + i * g.kernelW + j] = c * plane + i * g.dilationH * wp + j * g.dilationW }
                }
            }
            return offsets
        }

        /// Writes the zero-padded copy of one image (`[C, H, W]`) as `C` planes of `plane`
        /// elements into `padded`.
        @inlinable
        func pad(_ image: UnsafePointer<Float>, _ g: Conv2dGeometry, into padded: UnsafeMutablePointer<Float>) {
            let HW = g.height * g.width
            for c in 0..<g.channels {
                let dst = padded + c * plane
                dst.update(repeating: 0, count: plane)
                for h in 0..<g.height {
                    (dst + (h + g.padH) * wp + g.padW).update(from: image + c * HW + h * g.width, count: g.width)
                }
            }
        }
    }

    /// Scratch elements one worker needs for this layer: packed weights, the padded image
    /// and the results of every channel on the padded-width grid.
    @inlinable
    public static func workerScratch(_ g: Conv2dGeometry, outChannels: Int) -> Int {
        let l = Layout(g, outChannels: outChannels)
        return l.packedWeights + g.channels * l.plane + l.packedWeights / g.colRows * l.runs * run
    }
}

/// Forward convolution of `images` of the batch with the direct kernel, Float32, groups 1,
/// stride 1 (`Conv2dDirect.applies`). `scratch` holds `Conv2dDirect.workerScratch` elements.
@inlinable
func conv2dDirectForward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         output: UnsafeMutablePointer<Float>, images: Range<Int>, outChannels O: Int,
                         geometry g: Conv2dGeometry, scratch: UnsafeMutablePointer<Float>) {
    let l = Conv2dDirect.Layout(g, outChannels: O)
    let C = g.channels, K = g.colRows
    let CB = Conv2dDirect.channelBlock, R = Conv2dDirect.run
    let packed = scratch, padded = scratch + l.packedWeights, results = padded + C * l.plane
    // Weights as [block][c][tap][4 channels], zero for channels past O.
    let blocks = (O + CB - 1) / CB
    for b in 0..<blocks {
        for k in 0..<K {
            for j in 0..<CB {
                let o = b * CB + j
                packed[(b * K + k) * CB + j] = o < O ? weight[o * K + k] : 0
            }
        }
    }
    let offsets = l.entryOffsets(g, count: K)
    let HW = g.height * g.width, OHW = g.outH * g.outW, rowLen = l.runs * R
    offsets.withUnsafeBufferPointer { offs in
        for n in images {
            l.pad(input + n * C * HW, g, into: padded)
            // Runs outer, channel blocks inner: the input window of one run (a few rows of
            // every channel) stays in L1 while all blocks use it.
            for r in 0..<l.runs {
                for b in 0..<blocks {
                    conv2dDirectRun(padded + r * R, offsets: offs.baseAddress!, entries: K,
                                    weights: packed + b * K * CB, results: results + b * CB * rowLen + r * R, resultStride: rowLen)
                }
            }
            // Keep the ow < outW columns of each row, adding the bias.
            let out = output + n * O * OHW
            for o in 0..<O {
                let bv = bias?[o] ?? 0
                let src = results + o * rowLen, dst = out + o * OHW
                for oh in 0..<g.outH {
                    let s = src + oh * l.wp, d = dst + oh * g.outW
                    for ow in 0..<g.outW { d[ow] = s[ow] + bv }
                }
            }
        }
    }
}

/// One run of 24 flat positions for 4 output channels: Σ over the (channel, tap) entries k
/// of weight · x[offsets[k] + position], into `results + j·resultStride` for channel j of
/// the block. Not inlined: inside the caller's loops the compiler spilled accumulators to
/// the stack (measured 2x slower); on its own all twelve stay in registers. One flat loop
/// over the entries: a loop over channels around a loop over taps made the compiler move
/// the accumulators through the stack at every channel.
@usableFromInline @inline(never)
func conv2dDirectRun(_ x: UnsafeMutablePointer<Float>, offsets: UnsafePointer<Int>, entries: Int,
                     weights: UnsafeMutablePointer<Float>, results: UnsafeMutablePointer<Float>, resultStride: Int) {
    @inline(__always) func load(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a02 = SIMD8<Float>()
    var a10 = SIMD8<Float>(), a11 = SIMD8<Float>(), a12 = SIMD8<Float>()
    var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a22 = SIMD8<Float>()
    var a30 = SIMD8<Float>(), a31 = SIMD8<Float>(), a32 = SIMD8<Float>()
    var w = weights
    var k = 0
    while k < entries {
        let p = x + offsets[k]
        let x0 = load(p), x1 = load(p + 8), x2 = load(p + 16)
        let w0 = SIMD8<Float>(repeating: w[0]), w1 = SIMD8<Float>(repeating: w[1])
        let w2 = SIMD8<Float>(repeating: w[2]), w3 = SIMD8<Float>(repeating: w[3])
        a00.addProduct(w0, x0); a01.addProduct(w0, x1); a02.addProduct(w0, x2)
        a10.addProduct(w1, x0); a11.addProduct(w1, x1); a12.addProduct(w1, x2)
        a20.addProduct(w2, x0); a21.addProduct(w2, x1); a22.addProduct(w2, x2)
        a30.addProduct(w3, x0); a31.addProduct(w3, x1); a32.addProduct(w3, x2)
        w += 4
        k &+= 1
    }
    @inline(__always) func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
    store(a00, results); store(a01, results + 8); store(a02, results + 16)
    let r1 = results + resultStride, r2 = r1 + resultStride, r3 = r2 + resultStride
    store(a10, r1); store(a11, r1 + 8); store(a12, r1 + 16)
    store(a20, r2); store(a21, r2 + 8); store(a22, r2 + 16)
    store(a30, r3); store(a31, r3 + 8); store(a32, r3 + 16)
}

/// Whether `Conv2dDirect.policy` picks the direct kernel for this layer (element type aside).
@inlinable
func conv2dDirectChosen(_ geometry: Conv2dGeometry, outChannels: Int, groups: Int) -> Bool {
    switch Conv2dDirect.policy {
    case .never: return false
    case .always: return Conv2dDirect.applies(geometry, groups: groups)
    case .auto: return Conv2dDirect.preferred(geometry, outChannels: outChannels, groups: groups)
    }
}

/// Runs the direct kernel when `Conv2dDirect.policy` chooses it for this layer and
/// `workspaceCount` elements hold at least one worker's scratch; returns whether it ran.
/// Workers: as many of Loom's threads as the batch and the workspace allow.
@inlinable
func conv2dDirectForwardIfChosen(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                 output: UnsafeMutablePointer<Float>, batch: Int, outChannels: Int, groups: Int,
                                 geometry: Conv2dGeometry, workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) -> Bool {
    guard conv2dDirectChosen(geometry, outChannels: outChannels, groups: groups) else { return false }
    let need = Conv2dDirect.workerScratch(geometry, outChannels: outChannels)
    guard need <= workspaceCount else { return false }
    let workers = max(1, min(KernelThreading.maxThreads, batch, workspaceCount / need))
    if workers == 1 {
        conv2dDirectForward(input: input, weight: weight, bias: bias, output: output, images: 0..<batch,
                            outChannels: outChannels, geometry: geometry, scratch: workspace)
        return true
    }
    let box = UnsafeSendableBox((input, weight, bias, output, workspace))
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let (input, weight, bias, output, workspace) = box.value
        conv2dDirectForward(input: input, weight: weight, bias: bias, output: output,
                            images: (batch * w / workers)..<(batch * (w + 1) / workers),
                            outChannels: outChannels, geometry: geometry, scratch: workspace + w * need)
    }
    return true
}

// MARK: - Input gradient as a direct convolution

/// The geometry under which the input gradient of a stride-1, groups-1 convolution is itself
/// a stride-1 convolution: of the output gradient (O channels, outH x outW) by the weight
/// flipped in space with its channel axes swapped, padded by dilation·(kernel − 1) − padding
/// (which must not be negative). Nil when that does not hold or the policy does not choose
/// the direct kernel for it.
@inlinable
func conv2dDirectDataGradientGeometry(_ g: Conv2dGeometry, outChannels: Int, groups: Int) -> Conv2dGeometry? {
    guard groups == 1, g.strideH == 1, g.strideW == 1, outChannels > 0 else { return nil }
    let ph = g.dilationH * (g.kernelH - 1) - g.padH, pw = g.dilationW * (g.kernelW - 1) - g.padW
    guard ph >= 0, pw >= 0 else { return nil }
    let dg = Conv2dGeometry(channels: outChannels, height: g.outH, width: g.outW, kernel: (g.kernelH, g.kernelW),
                            padding: (ph, pw), dilation: (g.dilationH, g.dilationW))
    guard dg.outH == g.height, dg.outW == g.width, conv2dDirectChosen(dg, outChannels: g.channels, groups: 1) else { return nil }
    return dg
}

/// Workspace elements of the direct input gradient: the flipped weight and one worker's scratch.
@inlinable
func conv2dDirectDataGradientScratch(_ g: Conv2dGeometry, _ dg: Conv2dGeometry, outChannels: Int) -> Int {
    outChannels * g.colRows + Conv2dDirect.workerScratch(dg, outChannels: g.channels)
}

/// Computes the input gradient of a stride-1, groups-1 Float32 convolution with the direct
/// kernel when `conv2dDirectDataGradientGeometry` allows it and the workspace holds it;
/// returns whether it did.
@inlinable
func conv2dDirectDataGradientIfChosen(gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      gradInput: UnsafeMutablePointer<Float>, batch: Int, outChannels O: Int, groups: Int,
                                      geometry g: Conv2dGeometry, workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) -> Bool {
    guard let dg = conv2dDirectDataGradientGeometry(g, outChannels: O, groups: groups) else { return false }
    let C = g.channels, kh = g.kernelH, kw = g.kernelW
    let flippedCount = O * g.colRows
    guard conv2dDirectDataGradientScratch(g, dg, outChannels: O) <= workspaceCount else { return false }
    // w'[c, o, i, j] = w[o, c, kh − 1 − i, kw − 1 − j]
    let flipped = workspace
    for c in 0..<C {
        for o in 0..<O {
            let src = weight + (o * C + c) * kh * kw, dst = flipped + (c * O + o) * kh * kw
            for i in 0..<kh { for j in 0..<kw { dst[i * kw + j] = src[(kh - 1 - i) * kw + (kw - 1 - j)] } }
        }
    }
    return conv2dDirectForwardIfChosen(input: gradOutput, weight: flipped, bias: nil, output: gradInput, batch: batch,
                                       outChannels: C, groups: 1, geometry: dg, workspace: workspace + flippedCount,
                                       workspaceCount: workspaceCount - flippedCount)
}

// MARK: - Weight gradient as a direct reduction

// dW[o, c, i, j] = Σ_n Σ_(oh, ow) dY[n, o, oh, ow] · Xpad[n, c, oh + i·dh, ow + j·dw]. On the
// flat padded plane (see the top of this file) every kernel entry k = (c, i, j) is one
// offset off(k) = c·plane + i·dh·Wp + j·dw, so dW[o, k] = Σ_(oh, ow) dY[o, oh, ow] ·
// Xp[oh·Wp + ow + off(k)]: a product of [O x P] by a "shifted" [P x K] matrix that is never
// built. No im2col matrix, no BLAS packing.
//
// Register blocking as in a GEMM micro-kernel, vectors along the output channels: the
// output gradient is transposed per image to [P, O] (rows of O rounded up to 8), and a tile
// of 16 channels x 6 entries sits in twelve AVX accumulators while the kernel runs over
// positions: per position two aligned loads of dY and six broadcasts of X feed twelve fused
// multiply-adds, and the sums stay in registers over a whole segment of rows (no horizontal
// adds). Vectorising along positions instead (dY and X both as vectors, sums reduced
// across lanes at the end) measured slower: one of the two operands is then read at an
// arbitrary offset, and loads that cross a cache line cost two. Segments of rows keep the
// tile's dY block (at most ~256 positions x 64 bytes) in L1 while every entry reads it.

extension Conv2dDirect {
    /// Positions per segment of the weight-gradient reduction (whole rows, at least one).
    @usableFromInline static let weightSegment = 256

    /// Kernel entries per weight-gradient tile: 6 for a 16-channel tile, 12 for an 8-channel one.
    @usableFromInline static let weightEntries = 12

    /// Scratch elements one worker of the direct weight gradient needs: its transposed
    /// weight-gradient sum `[K rounded up to 12, O rounded up to 8]`, the padded image, the
    /// transposed output gradient `[outH·outW, O rounded up to 8]` and 16 elements of
    /// alignment slack.
    @inlinable
    public static func weightGradientScratch(_ g: Conv2dGeometry, outChannels: Int) -> Int {
        let l = Layout(g, outChannels: outChannels)
        let oPad = (outChannels + 7) / 8 * 8, kPad = (g.colRows + weightEntries - 1) / weightEntries * weightEntries
        return kPad * oPad + g.channels * l.plane + g.outH * g.outW * oPad + 16
    }
}

/// Rounds a Float pointer up to a 32-byte boundary.
@inlinable
func conv2dAlign32(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
    let bytes = Int(bitPattern: p)
    return p + ((32 - bytes % 32) % 32) / MemoryLayout<Float>.size
}

/// The weight gradient of the images `images`, Float32, groups 1, stride 1, summed into the
/// transposed `sumsT` (`[kPad, oPad]`, 32-byte aligned, not cleared here). `scratch` holds
/// the padded image and the transposed output gradient (see `weightGradientScratch`).
@inlinable
func conv2dDirectWeightGradient(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, sumsT: UnsafeMutablePointer<Float>,
                                images: Range<Int>, outChannels O: Int, geometry g: Conv2dGeometry,
                                scratch: UnsafeMutablePointer<Float>) {
    let l = Conv2dDirect.Layout(g, outChannels: O)
    let C = g.channels, K = g.colRows, KE = Conv2dDirect.weightEntries
    let oPad = (O + 7) / 8 * 8, kPad = (K + KE - 1) / KE * KE
    let padded = scratch
    let dyT = conv2dAlign32(padded + C * l.plane)
    // Entries past K read offset 0 and are dropped.
    let offsets = l.entryOffsets(g, count: kPad)
    let HW = g.height * g.width, OHW = g.outH * g.outW
    let segmentRows = max(1, Conv2dDirect.weightSegment / max(g.outW, 1))
    offsets.withUnsafeBufferPointer { offs in
        for n in images {
            l.pad(input + n * C * HW, g, into: padded)
            // dY of this image as [position, channel], channels past O zero.
            let dy = gradOutput + n * O * OHW
            if oPad > O {
                for p in 0..<OHW { (dyT + p * oPad + O).update(repeating: 0, count: oPad - O) }
            }
            transposeBand(dy, srcColStride: OHW, dyT, dstRowStride: oPad, rows: 0..<OHW, cols: O)
            var r0 = 0
            while r0 < g.outH {
                let rows = r0..<min(g.outH, r0 + segmentRows)
                var o0 = 0
                while o0 < oPad {
                    let wide = oPad - o0 >= 16
                    let entries = wide ? 6 : 12
                    var k0 = 0
                    while k0 < kPad {
                        let tile = UnsafePointer(dyT + r0 * g.outW * oPad + o0)
                        if wide {
                            conv2dDirectWeightTile16x6(tile, ldy: oPad, x: padded + r0 * l.wp, offsets: offs.baseAddress! + k0,
                                                       rows: rows.count, outW: g.outW, wp: l.wp, sums: sumsT + k0 * oPad + o0, lds: oPad)
                        } else {
                            conv2dDirectWeightTile8x12(tile, ldy: oPad, x: padded + r0 * l.wp, offsets: offs.baseAddress! + k0,
                                                       rows: rows.count, outW: g.outW, wp: l.wp, sums: sumsT + k0 * oPad + o0, lds: oPad)
                        }
                        k0 += entries
                    }
                    o0 += wide ? 16 : 8
                }
                r0 = rows.upperBound
            }
        }
    }
}

@inline(__always) @usableFromInline
func conv2dDirectLoad(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) @usableFromInline
func conv2dDirectAdd(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) + v, as: SIMD8<Float>.self)
}

/// sums[e·lds + v·8 ..< +8] += Σ_(r, w) dy[(r·outW + w)·ldy + v·8 ..< +8] · x[r·wp + w + offsets[e]]
/// for 16 channels (v = 0, 1) and six entries e, over `rows` rows of `outW` positions. Not
/// inlined, so that the twelve accumulators stay in registers (see `conv2dDirectRun`).
@usableFromInline @inline(never)
func conv2dDirectWeightTile16x6(_ dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, offsets: UnsafePointer<Int>,
                                rows: Int, outW: Int, wp: Int, sums: UnsafeMutablePointer<Float>, lds: Int) {
    let p0 = x + offsets[0], p1 = x + offsets[1], p2 = x + offsets[2]
    let p3 = x + offsets[3], p4 = x + offsets[4], p5 = x + offsets[5]
    var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a10 = SIMD8<Float>(), a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a30 = SIMD8<Float>(), a31 = SIMD8<Float>()
    var a40 = SIMD8<Float>(), a41 = SIMD8<Float>(), a50 = SIMD8<Float>(), a51 = SIMD8<Float>()
    // One flat loop over the positions (nested loops made the compiler shuffle and spill
    // the accumulators at the row boundary); `t` skips the padding columns at each row end.
    var d = dy, t = 0, w = 0, left = rows * outW
    while left > 0 {
        let d0 = conv2dDirectLoad(d), d1 = conv2dDirectLoad(d + 8)
        let b0 = SIMD8<Float>(repeating: p0[t]); a00.addProduct(d0, b0); a01.addProduct(d1, b0)
        let b1 = SIMD8<Float>(repeating: p1[t]); a10.addProduct(d0, b1); a11.addProduct(d1, b1)
        let b2 = SIMD8<Float>(repeating: p2[t]); a20.addProduct(d0, b2); a21.addProduct(d1, b2)
        let b3 = SIMD8<Float>(repeating: p3[t]); a30.addProduct(d0, b3); a31.addProduct(d1, b3)
        let b4 = SIMD8<Float>(repeating: p4[t]); a40.addProduct(d0, b4); a41.addProduct(d1, b4)
        let b5 = SIMD8<Float>(repeating: p5[t]); a50.addProduct(d0, b5); a51.addProduct(d1, b5)
        d += ldy
        t &+= 1
        w &+= 1
        if w == outW { w = 0; t &+= wp &- outW }
        left &-= 1
    }
    var s = sums
    conv2dDirectAdd(a00, s); conv2dDirectAdd(a01, s + 8); s += lds
    conv2dDirectAdd(a10, s); conv2dDirectAdd(a11, s + 8); s += lds
    conv2dDirectAdd(a20, s); conv2dDirectAdd(a21, s + 8); s += lds
    conv2dDirectAdd(a30, s); conv2dDirectAdd(a31, s + 8); s += lds
    conv2dDirectAdd(a40, s); conv2dDirectAdd(a41, s + 8); s += lds
    conv2dDirectAdd(a50, s); conv2dDirectAdd(a51, s + 8)
}

/// As `conv2dDirectWeightTile16x6` for 8 channels and twelve entries.
@usableFromInline @inline(never)
func conv2dDirectWeightTile8x12(_ dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, offsets: UnsafePointer<Int>,
                                rows: Int, outW: Int, wp: Int, sums: UnsafeMutablePointer<Float>, lds: Int) {
    let p0 = x + offsets[0], p1 = x + offsets[1], p2 = x + offsets[2], p3 = x + offsets[3]
    let p4 = x + offsets[4], p5 = x + offsets[5], p6 = x + offsets[6], p7 = x + offsets[7]
    let p8 = x + offsets[8], p9 = x + offsets[9], p10 = x + offsets[10], p11 = x + offsets[11]
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
    var a8 = SIMD8<Float>(), a9 = SIMD8<Float>(), a10 = SIMD8<Float>(), a11 = SIMD8<Float>()
    var d = dy, t = 0, w = 0, left = rows * outW
    while left > 0 {
        let v = conv2dDirectLoad(d)
        a0.addProduct(v, SIMD8(repeating: p0[t])); a1.addProduct(v, SIMD8(repeating: p1[t]))
        a2.addProduct(v, SIMD8(repeating: p2[t])); a3.addProduct(v, SIMD8(repeating: p3[t]))
        a4.addProduct(v, SIMD8(repeating: p4[t])); a5.addProduct(v, SIMD8(repeating: p5[t]))
        a6.addProduct(v, SIMD8(repeating: p6[t])); a7.addProduct(v, SIMD8(repeating: p7[t]))
        a8.addProduct(v, SIMD8(repeating: p8[t])); a9.addProduct(v, SIMD8(repeating: p9[t]))
        a10.addProduct(v, SIMD8(repeating: p10[t])); a11.addProduct(v, SIMD8(repeating: p11[t]))
        d += ldy
        t &+= 1
        w &+= 1
        if w == outW { w = 0; t &+= wp &- outW }
        left &-= 1
    }
    conv2dDirectAdd(a0, sums); conv2dDirectAdd(a1, sums + lds); conv2dDirectAdd(a2, sums + 2 * lds)
    conv2dDirectAdd(a3, sums + 3 * lds); conv2dDirectAdd(a4, sums + 4 * lds); conv2dDirectAdd(a5, sums + 5 * lds)
    conv2dDirectAdd(a6, sums + 6 * lds); conv2dDirectAdd(a7, sums + 7 * lds); conv2dDirectAdd(a8, sums + 8 * lds)
    conv2dDirectAdd(a9, sums + 9 * lds); conv2dDirectAdd(a10, sums + 10 * lds); conv2dDirectAdd(a11, sums + 11 * lds)
}

/// Computes the weight gradient of a stride-1, groups-1 Float32 convolution with the direct
/// kernel when `Conv2dDirect.policy` chooses it for the layer and `workspaceCount` elements
/// hold at least one worker's scratch; overwrites `gradWeight` and returns whether it ran.
/// Workers split the batch; each sums its images in its own scratch, and the sums are
/// added in worker order.
@inlinable
func conv2dDirectWeightGradientIfChosen(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                        gradWeight: UnsafeMutablePointer<Float>, batch: Int, outChannels O: Int, groups: Int,
                                        geometry g: Conv2dGeometry, workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) -> Bool {
    guard conv2dDirectChosen(g, outChannels: O, groups: groups) else { return false }
    guard Conv2dDirect.weightGradient else { return false }
    let need = Conv2dDirect.weightGradientScratch(g, outChannels: O)
    guard need <= workspaceCount else { return false }
    let K = g.colRows, KE = Conv2dDirect.weightEntries
    let oPad = (O + 7) / 8 * 8, kPad = (K + KE - 1) / KE * KE
    let workers = max(1, min(KernelThreading.maxThreads, batch, workspaceCount / need))
    // Each worker's transposed sum sits at the (aligned) start of its scratch, the padded
    // buffers after it.
    let box = UnsafeSendableBox((input, gradOutput, workspace))
    let body: @Sendable (Int) -> Void = { w in
        let (input, gradOutput, workspace) = box.value
        let sumsT = conv2dAlign32(workspace + w * need)
        sumsT.update(repeating: 0, count: kPad * oPad)
        conv2dDirectWeightGradient(input: input, gradOutput: gradOutput, sumsT: sumsT,
                                   images: (batch * w / workers)..<(batch * (w + 1) / workers),
                                   outChannels: O, geometry: g, scratch: sumsT + kPad * oPad)
    }
    if workers == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: body) }
    for o in 0..<O {
        for k in 0..<K {
            var v = conv2dAlign32(workspace)[k * oPad + o]
            for w in 1..<max(workers, 1) { v += conv2dAlign32(workspace + w * need)[k * oPad + o] }
            gradWeight[o * K + k] = v
        }
    }
    return true
}
