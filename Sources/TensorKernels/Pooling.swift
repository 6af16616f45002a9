/// 2-D max and average pooling over dense planes (the trailing H x W of NCHW).
///
/// A window of output `(oh, ow)` covers input rows `oh·sh − ph ..< oh·sh − ph + kh`
/// and columns likewise, clipped to the input: max pooling treats padding as −inf,
/// average pooling as zeros (counted in the divisor when `countIncludePad`, as
/// PyTorch's default). Planes are independent and split over threads when large.

/// Sizes, stride and padding of a 2-D pooling window over one plane.
public struct Pool2dGeometry: Sendable, Equatable {
    public var height: Int
    public var width: Int
    public var kernelH: Int
    public var kernelW: Int
    public var strideH: Int
    public var strideW: Int
    public var padH: Int
    public var padW: Int
    /// Output height (see `outputSize`).
    public var outH: Int
    /// Output width (see `outputSize`).
    public var outW: Int

    /// Builds the geometry and its output size. Traps on a non-positive kernel or stride,
    /// padding outside `0...kernel/2`, or an empty output (ops validate first).
    @inlinable
    public init(height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0), ceilMode: Bool = false) {
        precondition(height >= 0 && width >= 0, "Pool2dGeometry: negative size \(height)x\(width)")
        precondition(kernel.0 >= 1 && kernel.1 >= 1 && stride.0 >= 1 && stride.1 >= 1,
                     "Pool2dGeometry: kernel \(kernel) and stride \(stride) must be positive")
        precondition(padding.0 >= 0 && padding.1 >= 0 && padding.0 <= kernel.0 / 2 && padding.1 <= kernel.1 / 2,
                     "Pool2dGeometry: padding \(padding) must be between 0 and half the kernel \(kernel)")
        self.height = height
        self.width = width
        (kernelH, kernelW) = kernel
        (strideH, strideW) = stride
        (padH, padW) = padding
        outH = Pool2dGeometry.outputSize(input: height, kernel: kernel.0, stride: stride.0, padding: padding.0, ceilMode: ceilMode)
        outW = Pool2dGeometry.outputSize(input: width, kernel: kernel.1, stride: stride.1, padding: padding.1, ceilMode: ceilMode)
        precondition(outH >= 1 && outW >= 1, "Pool2dGeometry: kernel \(kernel) is larger than the padded input \(height + 2 * padding.0)x\(width + 2 * padding.1)")
    }

    /// Output extent along one axis as PyTorch computes it:
    /// `floor_or_ceil((input + 2·padding − kernel) / stride) + 1`, where in ceil mode a
    /// last window that would start in the right padding is dropped. 0 or less when
    /// the kernel does not fit.
    @inlinable
    public static func outputSize(input: Int, kernel: Int, stride: Int, padding: Int, ceilMode: Bool) -> Int {
        let span = input + 2 * padding - kernel
        if span < 0 { return 0 }
        var out = (span + (ceilMode ? stride - 1 : 0)) / stride + 1
        if ceilMode && (out - 1) * stride >= input + padding { out -= 1 }
        return out
    }

    /// Elements per input plane.
    @inlinable public var inputPlane: Int { height * width }
    /// Elements per output plane.
    @inlinable public var outputPlane: Int { outH * outW }
}

/// Planes per thread chunk so a chunk does about `KernelThreading.minChunk` window reads.
@inlinable
func poolGrain(_ g: Pool2dGeometry) -> Int {
    max(1, KernelThreading.minChunk / max(1, g.outputPlane * g.kernelH * g.kernelW))
}

/// Output columns `lo..<hi` whose window column `kj` falls inside the input, and that
/// column's input offset `ow·strideW + offset` (offset = kj − padW).
@inlinable
func poolColumns(_ g: Pool2dGeometry, kj: Int) -> (lo: Int, hi: Int, offset: Int) {
    let off = kj - g.padW
    let (lo, hi) = validOutputRange(offset: off, stride: g.strideW, size: g.width, count: g.outW)
    return (lo, hi, off)
}

/// Rows of input that output row `oh` reads, clipped to the input, and its unclipped start.
@inlinable
func poolRows(_ g: Pool2dGeometry, oh: Int) -> (start: Int, end: Int, h0: Int) {
    let h0 = oh * g.strideH - g.padH
    return (max(h0, 0), min(h0 + g.kernelH, g.height), h0)
}

/// Max pooling: for each of `planes` dense input planes `[height, width]`, writes the
/// window maxima to `output` (dense `[planes, outH, outW]`) and the position of each
/// maximum within its input plane (`ih·width + iw`, as PyTorch) to `indices`.
///
/// NaN wins (propagates); among equal values the first in row-major order wins.
/// O(planes·outH·outW·kh·kw). Works a whole output row per window offset, so the
/// compare-and-select chains of neighbouring outputs overlap.
@inlinable
public func maxPool2dForward<T: BinaryFloatingPoint>(
    _ input: UnsafePointer<T>, planes: Int, geometry g: Pool2dGeometry,
    _ output: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>
) {
    if g.kernelH == 2 && g.kernelW == 2 && g.strideH == 2 && g.strideW == 2 && g.padH == 0 && g.padW == 0
        && 2 * g.outH <= g.height && 2 * g.outW <= g.width {
        maxPool2x2Forward(input, planes: planes, geometry: g, output, indices: indices)
        return
    }
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        let W = g.width, OW = g.outW, sw = g.strideW
        for p in range {
            let src = input + p * g.inputPlane
            for oh in 0..<g.outH {
                let dst = output + p * g.outputPlane + oh * OW
                let idx = indices + p * g.outputPlane + oh * OW
                let (hs, he, _) = poolRows(g, oh: oh)
                // Start from -inf at the window's first real element (padding never wins).
                for ow in 0..<OW {
                    dst[ow] = -T.infinity
                    idx[ow] = Int64(hs * W + max(ow * sw - g.padW, 0))
                }
                for ih in hs..<he {
                    let row = src + ih * W
                    for kj in 0..<g.kernelW {
                        let (lo, hi, off) = poolColumns(g, kj: kj)
                        let base = Int64(ih * W + off)
                        for ow in lo..<hi {
                            let v = row[ow * sw + off]
                            let b = dst[ow]
                            let take = v > b || v.isNaN
                            dst[ow] = take ? v : b
                            idx[ow] = take ? base + Int64(ow * sw) : idx[ow]
                        }
                    }
                }
            }
        }
    }
}

/// `maxPool2dForward` for the common 2x2 window with stride 2 and no padding (every window
/// whole): each output reads its four inputs once, in the same order and with the same
/// NaN and tie rules as the general loop (which re-reads and re-writes the output row per
/// window element).
@inlinable
func maxPool2x2Forward<T: BinaryFloatingPoint>(
    _ input: UnsafePointer<T>, planes: Int, geometry g: Pool2dGeometry,
    _ output: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>
) {
    if T.self == Float.self {
        maxPool2x2ForwardFloat(UnsafeRawPointer(input).assumingMemoryBound(to: Float.self), planes: planes, geometry: g,
                               UnsafeMutableRawPointer(output).assumingMemoryBound(to: Float.self), indices: indices)
        return
    }
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        let W = g.width, OW = g.outW
        for p in range {
            let src = input + p * g.inputPlane
            for oh in 0..<g.outH {
                let r0 = src + 2 * oh * W, r1 = r0 + W
                let dst = output + p * g.outputPlane + oh * OW
                let idx = indices + p * g.outputPlane + oh * OW
                let base = Int64(2 * oh * W)
                for ow in 0..<OW {
                    let c = 2 * ow
                    // The first element starts the window (a -inf start would keep it too).
                    var best = r0[c], at = base + Int64(c)
                    var v = r0[c + 1]
                    if v > best || v.isNaN { best = v; at = base + Int64(c + 1) }
                    v = r1[c]
                    if v > best || v.isNaN { best = v; at = base + Int64(W + c) }
                    v = r1[c + 1]
                    if v > best || v.isNaN { best = v; at = base + Int64(W + c + 1) }
                    dst[ow] = best
                    idx[ow] = at
                }
            }
        }
    }
}

/// `maxPool2x2Forward` for Float32, eight outputs at a time: the two input rows of eight
/// windows are two pairs of vectors split into even and odd columns, and the four
/// candidates are compared with vector selects in the scalar loop's order (first wins ties,
/// NaN wins), so the result and the indices are the scalar loop's. The scalar loop's
/// data-dependent branches mispredicted on random activations (5% of a convnet-bn step).
/// A row's last outputs (fewer than eight) read whole vectors too (the extra lanes are
/// dropped) unless that would read past the input; then a zero-padded copy of their windows.
@inlinable
func maxPool2x2ForwardFloat(
    _ input: UnsafePointer<Float>, planes: Int, geometry g: Pool2dGeometry,
    _ output: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int64>
) {
    typealias V = SIMD8<Float>
    @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    /// Maxima and window codes (0: top left, 1: top right, 2: bottom left, 3: bottom right)
    /// of the eight windows whose rows start at `r0` and `r1`.
    @inline(__always) func block(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>) -> (V, SIMD8<Int32>) {
        let a0 = load(r0), a1 = load(r0 + 8), b0 = load(r1), b1 = load(r1 + 8)
        var best = V(lowHalf: a0.evenHalf, highHalf: a1.evenHalf)
        var code = SIMD8<Int32>(repeating: 0)
        @inline(__always) func consider(_ v: V, _ c: Int32) {
            let take = (v .> best) .| (v .!= v)
            best.replace(with: v, where: take)
            code.replace(with: c, where: take)
        }
        consider(V(lowHalf: a0.oddHalf, highHalf: a1.oddHalf), 1)
        consider(V(lowHalf: b0.evenHalf, highHalf: b1.evenHalf), 2)
        consider(V(lowHalf: b0.oddHalf, highHalf: b1.oddHalf), 3)
        return (best, code)
    }
    let lanes2 = SIMD8<Int64>(0, 2, 4, 6, 8, 10, 12, 14)
    let end = input + planes * g.inputPlane
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        let W = g.width, OW = g.outW, full = OW / 8 * 8
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tail in
            let t0 = tail.baseAddress!, t1 = t0 + 16
            for p in range {
                let src = input + p * g.inputPlane
                for oh in 0..<g.outH {
                    let r0 = src + 2 * oh * W, r1 = r0 + W
                    let dst = output + p * g.outputPlane + oh * OW
                    let idx = indices + p * g.outputPlane + oh * OW
                    let base = Int64(2 * oh * W)
                    /// Input offsets in the plane of the maxima of the windows from `ow`.
                    @inline(__always) func positions(_ code: SIMD8<Int32>, _ ow: Int) -> SIMD8<Int64> {
                        let c = SIMD8<Int64>(truncatingIfNeeded: code)
                        return lanes2 &+ (base + Int64(2 * ow)) &+ (c & 1) &+ (c &>> 1) &* Int64(W)
                    }
                    var ow = 0
                    while ow < full {
                        let (best, code) = block(r0 + 2 * ow, r1 + 2 * ow)
                        UnsafeMutableRawPointer(dst + ow).storeBytes(of: best, as: V.self)
                        UnsafeMutableRawPointer(idx + ow).storeBytes(of: positions(code, ow), as: SIMD8<Int64>.self)
                        ow += 8
                    }
                    if ow < OW {
                        // Whole vectors when their reads stay inside the input (the lanes
                        // past the row are computed and dropped), else a zero-padded copy.
                        let (best, code): (V, SIMD8<Int32>)
                        if r1 + 2 * ow + 16 <= end {
                            (best, code) = block(r0 + 2 * ow, r1 + 2 * ow)
                        } else {
                            let n = 2 * (OW - ow)
                            t0.update(repeating: 0, count: 32)
                            t0.update(from: r0 + 2 * ow, count: n)
                            t1.update(from: r1 + 2 * ow, count: n)
                            (best, code) = block(t0, t1)
                        }
                        let at = positions(code, ow)
                        for j in 0..<(OW - ow) {
                            dst[ow + j] = best[j]
                            idx[ow + j] = at[j]
                        }
                    }
                }
            }
        }
    }
}

/// Gradient of max pooling: zeroes `gradInput` (dense `[planes, height, width]`) and
/// adds each output gradient to the input position its `indices` entry names.
@inlinable
public func maxPool2dBackward<T: BinaryFloatingPoint>(
    _ gradOutput: UnsafePointer<T>, indices: UnsafePointer<Int64>, planes: Int, geometry g: Pool2dGeometry,
    _ gradInput: UnsafeMutablePointer<T>
) {
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        for p in range {
            let dst = gradInput + p * g.inputPlane
            dst.update(repeating: 0, count: g.inputPlane)
            let src = gradOutput + p * g.outputPlane
            let idx = indices + p * g.outputPlane
            for i in 0..<g.outputPlane { dst[Int(idx[i])] += src[i] }
        }
    }
}

/// The divisor of the average over the window starting at (h0, w0) (unclipped).
@inlinable
func avgPoolDivisor(_ g: Pool2dGeometry, _ h0: Int, _ w0: Int, countIncludePad: Bool) -> Int {
    if countIncludePad {
        // The window clipped to the padded input (PyTorch's pool_size).
        let hp = min(h0 + g.kernelH, g.height + g.padH) - h0
        let wp = min(w0 + g.kernelW, g.width + g.padW) - w0
        return hp * wp
    }
    let hs = max(h0, 0), he = min(h0 + g.kernelH, g.height)
    let ws = max(w0, 0), we = min(w0 + g.kernelW, g.width)
    return (he - hs) * (we - ws)
}

/// Average pooling: for each of `planes` dense input planes, writes window means to
/// `output` (dense `[planes, outH, outW]`). Padding counts as zeros; the divisor is the
/// window size clipped to the padded input when `countIncludePad` (PyTorch's default),
/// else the number of real input elements in the window. Each window sums in row-major order.
@inlinable
public func avgPool2dForward<T: BinaryFloatingPoint>(
    _ input: UnsafePointer<T>, planes: Int, geometry g: Pool2dGeometry, countIncludePad: Bool,
    _ output: UnsafeMutablePointer<T>
) {
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        let W = g.width, OW = g.outW, sw = g.strideW
        for p in range {
            let src = input + p * g.inputPlane
            for oh in 0..<g.outH {
                let dst = output + p * g.outputPlane + oh * OW
                let (hs, he, h0) = poolRows(g, oh: oh)
                dst.update(repeating: 0, count: OW)
                for ih in hs..<he {
                    let row = src + ih * W
                    for kj in 0..<g.kernelW {
                        let (lo, hi, off) = poolColumns(g, kj: kj)
                        for ow in lo..<hi { dst[ow] += row[ow * sw + off] }
                    }
                }
                for ow in 0..<OW {
                    dst[ow] /= T(avgPoolDivisor(g, h0, ow * sw - g.padW, countIncludePad: countIncludePad))
                }
            }
        }
    }
}

/// Gradient of average pooling: zeroes `gradInput` (dense `[planes, height, width]`)
/// and spreads each output gradient, divided by its window's divisor, over the
/// window's real input elements.
@inlinable
public func avgPool2dBackward<T: BinaryFloatingPoint>(
    _ gradOutput: UnsafePointer<T>, planes: Int, geometry g: Pool2dGeometry, countIncludePad: Bool,
    _ gradInput: UnsafeMutablePointer<T>
) {
    parallelChunks(count: planes, grain: poolGrain(g)) { range in
        let W = g.width, OW = g.outW, sw = g.strideW
        for p in range {
            let dst = gradInput + p * g.inputPlane
            dst.update(repeating: 0, count: g.inputPlane)
            for oh in 0..<g.outH {
                let src = gradOutput + p * g.outputPlane + oh * OW
                let (hs, he, h0) = poolRows(g, oh: oh)
                for ow in 0..<OW {
                    let w0 = ow * sw - g.padW
                    let ws = max(w0, 0), we = min(w0 + g.kernelW, W)
                    let v = src[ow] / T(avgPoolDivisor(g, h0, w0, countIncludePad: countIncludePad))
                    for ih in hs..<he {
                        let row = dst + ih * W
                        for iw in ws..<we { row[iw] += v }
                    }
                }
            }
        }
    }
}
