/// 2-D convolution as im2col + GEMM, over dense NCHW buffers.
///
/// A convolution of one image with `C` channels by a weight `[O, C/groups, kh, kw]` is,
/// for each group, the matrix product `W_g [O/g, K] x col_g [K, P]` where
/// `K = (C/groups)·kh·kw` and `P = outH·outW`, and `col` holds in row
/// `(c·kh + i)·kw + j`, column `oh·outW + ow` the input pixel
/// `x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]` (zero outside the image). The data
/// gradient is `col2im(W_gᵀ g)`, the weight gradient `Σ_n g_n col_nᵀ`. GEMM runs on
/// OpenBLAS (threaded); 1×1 stride-1 unpadded kernels skip im2col (the image already
/// is the `col` matrix).

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
    var lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    lo = min(lo, count)
    let last = size - 1 - offset
    var hi = last < 0 ? 0 : min(count, last / stride + 1)
    if hi < lo { hi = lo }
    return (lo, hi)
}

/// Channels `range` of `im2col` (rows `range.lowerBound·kh·kw ..< range.upperBound·kh·kw`);
/// channel ranges are independent, so callers may split them over threads.
@inlinable
func im2colChannels<T: BinaryFloatingPoint>(_ image: UnsafePointer<T>, _ g: Conv2dGeometry,
                                            _ col: UnsafeMutablePointer<T>, channels range: Range<Int>) {
    let H = g.height, W = g.width, OH = g.outH, OW = g.outW, P = OH * OW
    let sh = g.strideH, sw = g.strideW
    for c in range {
        let plane = image + c * H * W
        for ki in 0..<g.kernelH {
            let offH = ki * g.dilationH - g.padH
            for kj in 0..<g.kernelW {
                let row = (c * g.kernelH + ki) * g.kernelW + kj
                let dst = col + row * P
                let offW = kj * g.dilationW - g.padW
                let (lo, hi) = validOutputRange(offset: offW, stride: sw, size: W, count: OW)
                for oh in 0..<OH {
                    let ih = oh * sh + offH
                    let d = dst + oh * OW
                    if ih < 0 || ih >= H {
                        d.update(repeating: 0, count: OW)
                        continue
                    }
                    let base = ih * W + offW
                    for ow in 0..<lo { d[ow] = 0 }
                    if sw == 1 {
                        if hi > lo { (d + lo).update(from: plane + (base + lo), count: hi - lo) }
                    } else {
                        for ow in lo..<hi { d[ow] = plane[base + ow * sw] }
                    }
                    for ow in hi..<OW { d[ow] = 0 }
                }
            }
        }
    }
}

/// Channels `range` of `col2im` (accumulating into those channel planes only).
@inlinable
func col2imChannels<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ g: Conv2dGeometry,
                                            _ image: UnsafeMutablePointer<T>, channels range: Range<Int>) {
    let H = g.height, W = g.width, OH = g.outH, OW = g.outW, P = OH * OW
    let sh = g.strideH, sw = g.strideW
    for c in range {
        let plane = image + c * H * W
        for ki in 0..<g.kernelH {
            let offH = ki * g.dilationH - g.padH
            for kj in 0..<g.kernelW {
                let row = (c * g.kernelH + ki) * g.kernelW + kj
                let src = col + row * P
                let offW = kj * g.dilationW - g.padW
                let (lo, hi) = validOutputRange(offset: offW, stride: sw, size: W, count: OW)
                for oh in 0..<OH {
                    let ih = oh * sh + offH
                    if ih < 0 || ih >= H { continue }
                    let s = src + oh * OW
                    let base = ih * W + offW
                    if sw == 1 {
                        // Unit stride: a contiguous row add the compiler vectorises.
                        let d = plane + (base + lo), e = s + lo
                        for t in 0..<(hi - lo) { d[t] += e[t] }
                    } else {
                        for ow in lo..<hi { plane[base + ow * sw] += s[ow] }
                    }
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
/// Single-threaded: it is memory-bound and measured at under a tenth of the GEMM time it
/// feeds (OpenBLAS threads the GEMM), so splitting it over threads did not pay.
@inlinable
public func im2col<T: BinaryFloatingPoint>(_ image: UnsafePointer<T>, geometry: Conv2dGeometry, _ col: UnsafeMutablePointer<T>) {
    im2colChannels(image, geometry, col, channels: 0..<geometry.channels)
}

/// Folds an im2col matrix `[channels·kh·kw, outH·outW]` back onto an image
/// `[channels, height, width]`, adding every column entry to the pixel it was read
/// from (entries that came from padding are dropped). The adjoint of `im2col`.
///
/// Accumulates: zero `image` first for a plain fold.
@inlinable
public func col2im<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, geometry: Conv2dGeometry, _ image: UnsafeMutablePointer<T>) {
    col2imChannels(col, geometry, image, channels: 0..<geometry.channels)
}

/// Elements of scratch space the conv2d kernels need: one group's im2col matrix
/// (`(channels/groups)·kh·kw·outH·outW`), or 0 for pointwise convolutions.
@inlinable
public func conv2dWorkspaceCount(geometry: Conv2dGeometry, groups: Int) -> Int {
    if geometry.isPointwise { return 0 }
    return (geometry.channels / groups) * geometry.kernelH * geometry.kernelW * geometry.colCols
}

@inlinable
func conv2dCheck(_ geometry: Conv2dGeometry, outChannels: Int, groups: Int, workspace: UnsafeMutableRawPointer?, _ name: String) {
    precondition(groups >= 1 && geometry.channels % groups == 0 && outChannels % groups == 0,
                 "\(name): channels \(geometry.channels) and outChannels \(outChannels) must be divisible by groups \(groups)")
    precondition(workspace != nil || conv2dWorkspaceCount(geometry: geometry, groups: groups) == 0,
                 "\(name): a workspace of conv2dWorkspaceCount elements is required")
}

/// Forward 2-D convolution (cross-correlation, as PyTorch's `conv2d`).
///
/// `input` is dense `[batch, C, H, W]` (C = `geometry.channels`), `weight` dense
/// `[outChannels, C/groups, kh, kw]`, `bias` `[outChannels]` or nil; writes dense
/// `output [batch, outChannels, outH, outW]`:
/// `y[n, o, i, j] = b[o] + Σ_{c, p, q} w[o, c, p, q] · x[n, g·C/groups + c, i·sh − ph + p·dh, j·sw − pw + q·dw]`
/// where g is o's group. `workspace` holds `conv2dWorkspaceCount` elements (nil allowed
/// when that is 0). Cost: batch·groups GEMMs of (O/g) x K x P plus im2col.
@inlinable
public func conv2dForward<T: GemmScalar>(
    input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
    output: UnsafeMutablePointer<T>, batch: Int, outChannels: Int, groups: Int,
    geometry: Conv2dGeometry, workspace: UnsafeMutablePointer<T>?
) {
    conv2dCheck(geometry, outChannels: outChannels, groups: groups, workspace: workspace.map { UnsafeMutableRawPointer($0) }, "conv2dForward")
    let C = geometry.channels, cg = C / groups, og = outChannels / groups
    var gg = geometry
    gg.channels = cg
    let K = gg.colRows, P = gg.colCols, HW = geometry.height * geometry.width
    let pointwise = gg.isPointwise
    let rowMajorK = BlasOperand(transposed: false, leadingDimension: max(K, 1))
    let rowMajorP = BlasOperand(transposed: false, leadingDimension: max(P, 1))
    for n in 0..<batch {
        for g in 0..<groups {
            let img = input + (n * C + g * cg) * HW
            let col: UnsafePointer<T>
            if pointwise {
                col = img
            } else {
                im2col(img, geometry: gg, workspace!)
                col = UnsafePointer(workspace!)
            }
            T.gemm(m: og, n: P, k: K, alpha: 1, a: weight + g * og * K, aOp: rowMajorK, b: col, bOp: rowMajorP,
                   beta: 0, c: output + (n * outChannels + g * og) * P, ldc: max(P, 1))
        }
        if let bias {
            for o in 0..<outChannels {
                let b = bias[o]
                let row = output + (n * outChannels + o) * P
                for i in 0..<P { row[i] += b }
            }
        }
    }
}

/// Gradient of `conv2dForward` with respect to its input.
///
/// `gradOutput` dense `[batch, outChannels, outH, outW]`, `weight` dense
/// `[outChannels, C/groups, kh, kw]`; writes (overwrites) dense `gradInput [batch, C, H, W]`
/// as `col2im(W_gᵀ · gradOutput_g)` per image and group.
@inlinable
public func conv2dBackwardData<T: GemmScalar>(
    gradOutput: UnsafePointer<T>, weight: UnsafePointer<T>, gradInput: UnsafeMutablePointer<T>,
    batch: Int, outChannels: Int, groups: Int, geometry: Conv2dGeometry, workspace: UnsafeMutablePointer<T>?
) {
    conv2dCheck(geometry, outChannels: outChannels, groups: groups, workspace: workspace.map { UnsafeMutableRawPointer($0) }, "conv2dBackwardData")
    let C = geometry.channels, cg = C / groups, og = outChannels / groups
    var gg = geometry
    gg.channels = cg
    let K = gg.colRows, P = gg.colCols, HW = geometry.height * geometry.width
    let pointwise = gg.isPointwise
    let weightT = BlasOperand(transposed: true, leadingDimension: max(K, 1))
    let rowMajorP = BlasOperand(transposed: false, leadingDimension: max(P, 1))
    if !pointwise { gradInput.update(repeating: 0, count: batch * C * HW) }
    for n in 0..<batch {
        for g in 0..<groups {
            let gOut = gradOutput + (n * outChannels + g * og) * P
            let gIn = gradInput + (n * C + g * cg) * HW
            let w = weight + g * og * K
            if pointwise {
                T.gemm(m: K, n: P, k: og, alpha: 1, a: w, aOp: weightT, b: gOut, bOp: rowMajorP, beta: 0, c: gIn, ldc: max(P, 1))
            } else {
                T.gemm(m: K, n: P, k: og, alpha: 1, a: w, aOp: weightT, b: gOut, bOp: rowMajorP, beta: 0, c: workspace!, ldc: max(P, 1))
                col2im(UnsafePointer(workspace!), geometry: gg, gIn)
            }
        }
    }
}

/// Gradient of `conv2dForward` with respect to its weight.
///
/// `input` dense `[batch, C, H, W]`, `gradOutput` dense `[batch, outChannels, outH, outW]`;
/// writes (overwrites) dense `gradWeight [outChannels, C/groups, kh, kw]` as
/// `Σ_n gradOutput_{n,g} · col_{n,g}ᵀ` (zeros when batch is 0). The bias gradient is
/// the sum of `gradOutput` over batch and space, left to the caller.
@inlinable
public func conv2dBackwardWeight<T: GemmScalar>(
    input: UnsafePointer<T>, gradOutput: UnsafePointer<T>, gradWeight: UnsafeMutablePointer<T>,
    batch: Int, outChannels: Int, groups: Int, geometry: Conv2dGeometry, workspace: UnsafeMutablePointer<T>?
) {
    conv2dCheck(geometry, outChannels: outChannels, groups: groups, workspace: workspace.map { UnsafeMutableRawPointer($0) }, "conv2dBackwardWeight")
    let C = geometry.channels, cg = C / groups, og = outChannels / groups
    var gg = geometry
    gg.channels = cg
    let K = gg.colRows, P = gg.colCols, HW = geometry.height * geometry.width
    let pointwise = gg.isPointwise
    let rowMajorP = BlasOperand(transposed: false, leadingDimension: max(P, 1))
    let colT = BlasOperand(transposed: true, leadingDimension: max(P, 1))
    if batch == 0 {
        gradWeight.update(repeating: 0, count: outChannels * K)
        return
    }
    for n in 0..<batch {
        for g in 0..<groups {
            let img = input + (n * C + g * cg) * HW
            let col: UnsafePointer<T>
            if pointwise {
                col = img
            } else {
                im2col(img, geometry: gg, workspace!)
                col = UnsafePointer(workspace!)
            }
            T.gemm(m: og, n: K, k: P, alpha: 1, a: gradOutput + (n * outChannels + g * og) * P, aOp: rowMajorP,
                   b: col, bOp: colT, beta: n == 0 ? 0 : 1, c: gradWeight + g * og * K, ldc: max(K, 1))
        }
    }
}
