// Convolution geometry and the im2col / col2im transforms (see Conv.swift for the method).


/// Sizes, stride, padding and dilation of a 2-D convolution over one NCHW image.
public struct Conv2dGeometry: Sendable, Equatable {
    /// Input channels of the image (all groups together for the conv2d entry points;
    /// one group's channels when passed to `im2col` / `col2im`).
    public var channels: Int
    public var height: Int
    public var width: Int
    public var kernelH: Int
    public var kernelW: Int
    public var strideH: Int
    public var strideW: Int
    public var padH: Int
    public var padW: Int
    public var dilationH: Int
    public var dilationW: Int
    /// Output height: `(height + 2·padH − dilationH·(kernelH − 1) − 1) / strideH + 1`.
    public var outH: Int
    /// Output width, as `outH`.
    public var outW: Int

    /// Builds the geometry and its output size. Traps on non-positive kernel, stride or
    /// dilation, negative padding or sizes, or a dilated kernel larger than the padded
    /// input (ops validate first with a readable message).
    @inlinable
    public init(channels: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "Conv2dGeometry: negative size \(channels)x\(height)x\(width)")
        precondition(kernel.0 >= 1 && kernel.1 >= 1 && stride.0 >= 1 && stride.1 >= 1 && dilation.0 >= 1 && dilation.1 >= 1
                     && padding.0 >= 0 && padding.1 >= 0,
                     "Conv2dGeometry: kernel \(kernel), stride \(stride), dilation \(dilation) must be positive and padding \(padding) non-negative")
        self.channels = channels
        self.height = height
        self.width = width
        (kernelH, kernelW) = kernel
        (strideH, strideW) = stride
        (padH, padW) = padding
        (dilationH, dilationW) = dilation
        let oh = Conv2dGeometry.outputSize(input: height, kernel: kernel.0, stride: stride.0, padding: padding.0, dilation: dilation.0)
        let ow = Conv2dGeometry.outputSize(input: width, kernel: kernel.1, stride: stride.1, padding: padding.1, dilation: dilation.1)
        precondition(oh >= 1 && ow >= 1,
                     "Conv2dGeometry: dilated kernel \(kernel) (dilation \(dilation)) is larger than the padded input \(height + 2 * padding.0)x\(width + 2 * padding.1)")
        outH = oh
        outW = ow
    }

    /// Output extent along one axis, or 0 or less when the dilated kernel does not fit.
    @inlinable
    public static func outputSize(input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int) -> Int {
        let span = input + 2 * padding - dilation * (kernel - 1) - 1
        return span < 0 ? 0 : span / stride + 1
    }

    /// Rows of the im2col matrix: `channels·kernelH·kernelW`.
    @inlinable public var colRows: Int { channels * kernelH * kernelW }
    /// Columns of the im2col matrix: `outH·outW`.
    @inlinable public var colCols: Int { outH * outW }
    /// Whether the image already is its im2col matrix (1×1 kernel, stride 1, no padding).
    @inlinable public var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0
    }
}

/// Output indices `o` in `0..<count` with `0 <= o·stride + offset < size`, as a half-open range.
@inlinable
func validOutputRange(offset: Int, stride: Int, size: Int, count: Int) -> (Int, Int) {
    if stride == 1 {
        // No division: o + offset in 0..<size.
        let lo = min(max(-offset, 0), count)
        return (lo, max(lo, min(count, size - offset)))
    }
    var lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    lo = min(lo, count)
    let last = size - 1 - offset
    var hi = last < 0 ? 0 : min(count, last / stride + 1)
    if hi < lo { hi = lo }
    return (lo, hi)
}


/// Zeroes `rows` elements `stride` apart.
@inlinable
func zeroColumn<T: BinaryFloatingPoint>(_ p: UnsafeMutablePointer<T>, rows: Int, stride: Int) {
    var q = p
    for _ in 0..<rows {
        q.pointee = 0
        q += stride
    }
}

/// Channels `range` of `im2col`, writing row `r` of the column matrix at `col + r·ld`
/// (`ld >= outH·outW`, so several images can sit side by side in one matrix); channel
/// ranges are independent, so callers may split them over threads.
@inlinable
func im2colChannels<T: BinaryFloatingPoint>(_ image: UnsafePointer<T>, _ g: Conv2dGeometry,
                                            _ col: UnsafeMutablePointer<T>, ld: Int, channels range: Range<Int>) {
    let H = g.height, W = g.width, OH = g.outH, OW = g.outW
    let sh = g.strideH, sw = g.strideW
    if g.isPointwise {
        // The image plane is its own column row.
        for c in range { (col + c * ld).update(from: image + c * H * W, count: H * W) }
        return
    }
    // Same-width stride-1 rows (the usual "same" convolution): the valid rows of one
    // kernel tap form one contiguous run of the plane, copied at once; the few entries
    // that wrap across a row edge are zeroed afterwards. Index arithmetic wraps (&+, &*):
    // every index is bounded by the buffer sizes checked by the callers.
    let flat = sw == 1 && sh == 1 && OW == W
    // Tap-major loops: the valid output ranges (two divisions each) are computed once
    // per kernel tap, not once per channel.
    for ki in 0..<g.kernelH {
        let offH = ki &* g.dilationH &- g.padH
        let (rLo, rHi) = validOutputRange(offset: offH, stride: sh, size: H, count: OH)
        for kj in 0..<g.kernelW {
            let offW = kj &* g.dilationW &- g.padW
            let (lo, hi) = validOutputRange(offset: offW, stride: sw, size: W, count: OW)
            let rowStep = sh &* W
            for c in range {
                let plane = image + c &* H &* W
                let dst = col + ((c &* g.kernelH &+ ki) &* g.kernelW &+ kj) &* ld
                for t in 0..<(rLo &* OW) { dst[t] = 0 }
                for t in (rHi &* OW)..<(OH &* OW) { dst[t] = 0 }
                if rHi <= rLo { continue }
                if flat {
                    if hi > lo {
                        // A plain loop (vectorised) beats memmove's `rep movsb` for these few-KiB runs.
                        let first = rLo &* OW &+ lo, count = (rHi &- 1) &* OW &+ hi &- first
                        let d = dst + first, s = plane + (first &+ offH &* W &+ offW)
                        for t in 0..<count { d[t] = s[t] }
                    }
                } else {
                    var d = dst + rLo &* OW
                    var s = plane + ((rLo &* sh &+ offH) &* W &+ offW)
                    for _ in rLo..<rHi {
                        if sw == 1 {
                            for ow in lo..<hi { d[ow] = s[ow] }
                        } else {
                            for ow in lo..<hi { d[ow] = s[ow &* sw] }
                        }
                        d += OW
                        s += rowStep
                    }
                }
                // Padding columns, one strided store per row (a per-row zeroing loop
                // would become a memset call for one or two elements).
                for ow in 0..<lo { zeroColumn(dst + (rLo &* OW &+ ow), rows: rHi &- rLo, stride: OW) }
                for ow in hi..<OW { zeroColumn(dst + (rLo &* OW &+ ow), rows: rHi &- rLo, stride: OW) }
            }
        }
    }
}

/// Channels `range` of `col2im` (accumulating into those channel planes only), reading
/// row `r` of the column matrix at `col + r·ld`. With `clobberColumn`, `col` must be
/// writable scratch: the "same"-convolution path zeroes its padding entries so that
/// each kernel tap folds back as one contiguous add.
@inlinable
func col2imChannels<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ g: Conv2dGeometry, ld: Int,
                                            _ image: UnsafeMutablePointer<T>, channels range: Range<Int>,
                                            clobberColumn: Bool = false) {
    let H = g.height, W = g.width, OH = g.outH, OW = g.outW
    let sh = g.strideH, sw = g.strideW
    let flat = clobberColumn && sw == 1 && sh == 1 && OW == W
    let rowStep = sh &* W
    for c in range {
        let plane = image + c &* H &* W
        for ki in 0..<g.kernelH {
            let offH = ki &* g.dilationH &- g.padH
            let (rLo, rHi) = validOutputRange(offset: offH, stride: sh, size: H, count: OH)
            if rHi <= rLo { continue }
            for kj in 0..<g.kernelW {
                let src = col + ((c &* g.kernelH &+ ki) &* g.kernelW &+ kj) &* ld
                let offW = kj &* g.dilationW &- g.padW
                let (lo, hi) = validOutputRange(offset: offW, stride: sw, size: W, count: OW)
                if hi <= lo { continue }
                if flat {
                    let scratch = UnsafeMutablePointer(mutating: src)
                    for ow in 0..<lo { zeroColumn(scratch + (rLo &* OW &+ ow), rows: rHi &- rLo, stride: OW) }
                    for ow in hi..<OW { zeroColumn(scratch + (rLo &* OW &+ ow), rows: rHi &- rLo, stride: OW) }
                    let first = rLo &* OW &+ lo, count = (rHi &- 1) &* OW &+ hi &- first
                    let d = plane + (first &+ offH &* W &+ offW), e = src + first
                    for t in 0..<count { d[t] += e[t] }
                    continue
                }
                var s = src + rLo &* OW
                var d = plane + ((rLo &* sh &+ offH) &* W &+ offW)
                for _ in rLo..<rHi {
                    if sw == 1 {
                        // Unit stride: a contiguous row add the compiler vectorises.
                        for ow in lo..<hi { d[ow] += s[ow] }
                    } else {
                        for ow in lo..<hi { d[ow &* sw] += s[ow] }
                    }
                    s += OW
                    d += rowStep
                }
            }
        }
    }
}

/// Unfolds one image `[channels, height, width]` (dense) into the im2col matrix
/// `[channels·kh·kw, outH·outW]` (dense, row-major); padding reads as zero.
///
/// Rows are channel-major then kernel row then kernel column, matching a weight
/// `[O, channels, kh, kw]` flattened to `[O, channels·kh·kw]`. O(channels·kh·kw·outH·outW).
/// `ld` (default `outH·outW`) is the distance between rows of `col`, so that several
/// images can be unfolded side by side into one wider matrix.
@inlinable
public func im2col<T: BinaryFloatingPoint>(_ image: UnsafePointer<T>, geometry: Conv2dGeometry, _ col: UnsafeMutablePointer<T>,
                                           ld: Int? = nil) {
    im2colChannels(image, geometry, col, ld: ld ?? geometry.colCols, channels: 0..<geometry.channels)
}

/// Folds an im2col matrix `[channels·kh·kw, outH·outW]` (rows `ld` apart, default
/// `outH·outW`) back onto an image `[channels, height, width]`, adding every column
/// entry to the pixel it was read from (entries that came from padding are dropped).
/// The adjoint of `im2col`.
///
/// Accumulates: zero `image` first for a plain fold.
@inlinable
public func col2im<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, geometry: Conv2dGeometry, _ image: UnsafeMutablePointer<T>,
                                           ld: Int? = nil) {
    col2imChannels(col, geometry, ld: ld ?? geometry.colCols, image, channels: 0..<geometry.channels)
}
