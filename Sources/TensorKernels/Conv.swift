import Dispatch

/// 2-D convolution as im2col + GEMM, over dense NCHW buffers.
///
/// A convolution of one image with `C` channels by a weight `[O, C/groups, kh, kw]` is,
/// for each group, the matrix product `W_g [O/g, K] x col_g [K, P]` where
/// `K = (C/groups)·kh·kw` and `P = outH·outW`, and `col` holds in row
/// `(c·kh + i)·kw + j`, column `oh·outW + ow` the input pixel
/// `x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]` (zero outside the image). The data
/// gradient is `col2im(W_gᵀ g)`, the weight gradient `Σ_n g_n col_nᵀ`. GEMM runs on
/// OpenBLAS. `Conv2dPlan` splits the batch: usually several images are unfolded side by
/// side into one `[K, nChunk·P]` matrix so that each chunk and group costs one large
/// GEMM threaded by OpenBLAS rather than one small GEMM per image, with im2col, col2im
/// and the NCHW scatter/gather over Loom's threads one image per task; for LeNet-sized
/// layers, whose per-image GEMMs OpenBLAS runs on the calling thread, Loom's threads
/// instead take shares of the batch image by image. With one image per chunk, 1×1
/// stride-1 unpadded kernels skip im2col (the image already is the `col` matrix).

// MARK: - Convolution

/// Forward 2-D convolution (cross-correlation, as PyTorch's `conv2d`).
///
/// `input` is dense `[batch, C, H, W]` (C = `geometry.channels`), `weight` dense
/// `[outChannels, C/groups, kh, kw]`, `bias` `[outChannels]` or nil; writes dense
/// `output [batch, outChannels, outH, outW]`:
/// `y[n, o, i, j] = b[o] + Σ_{c, p, q} w[o, c, p, q] · x[n, g·C/groups + c, i·sh − ph + p·dh, j·sw − pw + q·dw]`
/// where g is o's group.
///
/// Per chunk of images (see `Conv2dPlan`) and group: im2col of every image side by side
/// into `[K, nChunk·P]` (K = (C/groups)·kh·kw, P = outH·outW), one GEMM
/// `W_g [O/groups, K] x col` into the workspace, then a scatter (plus bias) into NCHW.
/// A chunk of one image runs its GEMM straight into `output` (pointwise convolutions then
/// skip im2col). `workspace` holds `conv2dWorkspaceCount` elements for `plan` (nil
/// allowed when that is 0). Cost: ⌈batch/chunk⌉·groups GEMMs of (O/g) x K x (chunk·P),
/// plus im2col and the scatter.
///
/// Float32 stride-1 layers with few channels (`Conv2dDirect.policy`, `preferred`) run the
/// direct kernel of ConvDirect.swift instead, image-parallel on Loom's threads inside the
/// same workspace (it needs about one padded image per worker, far less than im2col).
@inlinable
public func conv2dForward<T: GemmScalar>(
    input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
    output: UnsafeMutablePointer<T>, batch: Int, outChannels: Int, groups: Int,
    geometry: Conv2dGeometry, plan: Conv2dPlan = Conv2dPlan(), workspace: UnsafeMutablePointer<T>?
) {
    conv2dCheck(geometry, outChannels: outChannels, groups: groups, plan: plan,
                workspace: workspace.map { UnsafeMutableRawPointer($0) }, "conv2dForward")
    if T.self == Float.self, batch > 0, let workspace,
       conv2dDirectForwardIfChosen(input: UnsafeRawPointer(input).assumingMemoryBound(to: Float.self),
                                   weight: UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self),
                                   bias: bias.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) },
                                   output: UnsafeMutableRawPointer(output).assumingMemoryBound(to: Float.self),
                                   batch: batch, outChannels: outChannels, groups: groups, geometry: geometry,
                                   workspace: UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Float.self),
                                   workspaceCount: conv2dWorkspaceCount(geometry: geometry, outChannels: outChannels, groups: groups, plan: plan)) {
        return
    }
    let z = Conv2dSizes(geometry, outChannels: outChannels, groups: groups)
    let workers = max(1, min(plan.threads, batch))
    let perWorker = conv2dWorkerWorkspace(geometry: geometry, outChannels: outChannels, groups: groups,
                                          imagesPerChunk: plan.imagesPerChunk)
    conv2dRunWorkers(batch: batch, workers: workers) { w, images in
        conv2dForwardImages(input: input, weight: weight, bias: bias, output: output, images: images, z,
                            imagesPerChunk: plan.imagesPerChunk, parallel: workers == 1,
                            workspace: workspace.map { $0 + w * perWorker })
    }
}

/// `conv2dForward` over the images `images` of the batch, on one worker.
@inlinable
func conv2dForwardImages<T: GemmScalar>(
    input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>?, output: UnsafeMutablePointer<T>,
    images: Range<Int>, _ z: Conv2dSizes, imagesPerChunk: Int, parallel: Bool, workspace: UnsafeMutablePointer<T>?
) {
    let (C, cg, O, og, K, P, HW) = (z.C, z.cg, z.O, z.og, z.K, z.P, z.HW)
    let gg = z.group
    let pointwise = gg.isPointwise
    let rowMajorK = BlasOperand(transposed: false, leadingDimension: max(K, 1))
    let chunk = max(1, imagesPerChunk)
    var n0 = images.lowerBound
    while n0 < images.upperBound {
        let nb = min(chunk, images.upperBound - n0)
        if nb == 1 {
            // One image: GEMM straight into the output.
            let rowMajorP = BlasOperand(transposed: false, leadingDimension: max(P, 1))
            for g in 0..<z.groups {
                let img = input + (n0 * C + g * cg) * HW
                let col: UnsafePointer<T>
                if pointwise {
                    col = img
                } else {
                    im2col(img, geometry: gg, workspace!)
                    col = UnsafePointer(workspace!)
                }
                T.gemm(m: og, n: P, k: K, alpha: 1, a: weight + g * og * K, aOp: rowMajorK, b: col, bOp: rowMajorP,
                       beta: 0, c: output + (n0 * O + g * og) * P, ldc: max(P, 1))
            }
            if let bias {
                for o in 0..<O {
                    let b = bias[o]
                    let row = output + (n0 * O + o) * P
                    for i in 0..<P { row[i] += b }
                }
            }
        } else {
            let ld = nb * P
            let col = workspace!, result = workspace! + K * ld
            let ldOp = BlasOperand(transposed: false, leadingDimension: ld)
            for g in 0..<z.groups {
                let first = input + (n0 * C + g * cg) * HW
                conv2dForEachImage(nb, elementsPerImage: K * P, parallel: parallel) { i in
                    im2colChannels(first + i * C * HW, gg, col + i * P, ld: ld, channels: 0..<cg)
                }
                T.gemm(m: og, n: ld, k: K, alpha: 1, a: weight + g * og * K, aOp: rowMajorK, b: col, bOp: ldOp,
                       beta: 0, c: result, ldc: ld)
                // Scatter [og, nb·P] into images n0..<n0+nb, channels g·og..<(g+1)·og, adding the bias.
                let out0 = output + (n0 * O + g * og) * P
                conv2dForEachImage(nb, elementsPerImage: og * P, parallel: parallel) { i in
                    for o in 0..<og {
                        let src = result + o * ld + i * P, dst = out0 + i * O * P + o * P
                        if let bias {
                            let b = bias[g * og + o]
                            for t in 0..<P { dst[t] = src[t] + b }
                        } else {
                            dst.update(from: src, count: P)
                        }
                    }
                }
            }
        }
        n0 += nb
    }
}

/// Gradients of `conv2dForward` with respect to its input and/or its weight, sharing
/// one pass over the output gradient.
///
/// `gradOutput` dense `[batch, outChannels, outH, outW]`. When `gradInput` is given,
/// `weight` (dense `[outChannels, C/groups, kh, kw]`) must be too, and `gradInput`
/// (dense `[batch, C, H, W]`) is overwritten with `col2im(W_gᵀ · gradOutput_g)` per image
/// and group. When `gradWeight` is given, `input` (dense `[batch, C, H, W]`) must be too,
/// and `gradWeight` (dense `[outChannels, C/groups, kh, kw]`) is overwritten with
/// `Σ_n gradOutput_{n,g} · col_{n,g}ᵀ` (zeros when batch is 0). The bias gradient is the
/// sum of `gradOutput` over batch and space, left to the caller.
///
/// Per chunk of images (see `Conv2dPlan`) and group: the output gradient is gathered into
/// `[O/groups, nChunk·P]`, then one GEMM against the chunk's im2col matrix accumulates
/// the weight gradient, and one GEMM `W_gᵀ x gradOutput` yields the chunk's column
/// gradient, folded back per image by col2im. Workers after the first accumulate their
/// weight gradient in the workspace, summed at the end. `workspace` holds
/// `conv2dWorkspaceCount` elements for `plan` (nil allowed when that is 0).
@inlinable
public func conv2dBackward<T: GemmScalar>(
    input: UnsafePointer<T>?, weight: UnsafePointer<T>?, gradOutput: UnsafePointer<T>,
    gradInput: UnsafeMutablePointer<T>?, gradWeight: UnsafeMutablePointer<T>?,
    batch: Int, outChannels: Int, groups: Int, geometry: Conv2dGeometry, plan: Conv2dPlan = Conv2dPlan(),
    workspace: UnsafeMutablePointer<T>?
) {
    conv2dCheck(geometry, outChannels: outChannels, groups: groups, plan: plan,
                workspace: workspace.map { UnsafeMutableRawPointer($0) }, "conv2dBackward")
    precondition(gradInput == nil || weight != nil, "conv2dBackward: gradInput needs the weight")
    precondition(gradWeight == nil || input != nil, "conv2dBackward: gradWeight needs the input")
    let z = Conv2dSizes(geometry, outChannels: outChannels, groups: groups)
    let weightCount = z.O * z.K
    if batch == 0 {
        gradWeight?.update(repeating: 0, count: weightCount)
        return
    }
    // Stride-1 Float32 layers with few channels: the input gradient as a direct convolution
    // (ConvDirect.swift), before the weight gradient reuses the workspace.
    var gradInput = gradInput, gradWeight = gradWeight
    let workspaceCount = conv2dWorkspaceCount(geometry: geometry, outChannels: outChannels, groups: groups, plan: plan)
    if T.self == Float.self, let gi = gradInput, let weight, let workspace,
       conv2dDirectDataGradientIfChosen(gradOutput: UnsafeRawPointer(gradOutput).assumingMemoryBound(to: Float.self),
                                        weight: UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self),
                                        gradInput: UnsafeMutableRawPointer(gi).assumingMemoryBound(to: Float.self),
                                        batch: batch, outChannels: outChannels, groups: groups, geometry: geometry,
                                        workspace: UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Float.self),
                                        workspaceCount: workspaceCount) {
        gradInput = nil
        if gradWeight == nil { return }
    }
    // The weight gradient of the same layers as a direct reduction (no im2col, no packing).
    if T.self == Float.self, let gw = gradWeight, let input, let workspace,
       conv2dDirectWeightGradientIfChosen(input: UnsafeRawPointer(input).assumingMemoryBound(to: Float.self),
                                          gradOutput: UnsafeRawPointer(gradOutput).assumingMemoryBound(to: Float.self),
                                          gradWeight: UnsafeMutableRawPointer(gw).assumingMemoryBound(to: Float.self),
                                          batch: batch, outChannels: outChannels, groups: groups, geometry: geometry,
                                          workspace: UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Float.self),
                                          workspaceCount: workspaceCount) {
        if gradInput == nil { return }
        gradWeight = nil
    }
    let workers = max(1, min(plan.threads, batch))
    let perWorker = conv2dWorkerWorkspace(geometry: geometry, outChannels: outChannels, groups: groups,
                                          imagesPerChunk: plan.imagesPerChunk)
    // Weight-gradient partial sums of workers 1... sit after all workers' scratch.
    let partials = workspace.map { $0 + plan.threads * perWorker }
    conv2dRunWorkers(batch: batch, workers: workers) { w, images in
        conv2dBackwardImages(input: input, weight: weight, gradOutput: gradOutput, gradInput: gradInput,
                             gradWeight: gradWeight.map { w == 0 ? $0 : partials! + (w - 1) * weightCount },
                             images: images, z, imagesPerChunk: plan.imagesPerChunk, parallel: workers == 1,
                             workspace: workspace.map { $0 + w * perWorker })
    }
    if let gradWeight, workers > 1 {
        for w in 1..<workers {
            let part = partials! + (w - 1) * weightCount
            for i in 0..<weightCount { gradWeight[i] += part[i] }
        }
    }
}

/// `conv2dBackward` over the images `images` of the batch, on one worker; `gradWeight`
/// receives this worker's sum (overwritten).
@inlinable
func conv2dBackwardImages<T: GemmScalar>(
    input: UnsafePointer<T>?, weight: UnsafePointer<T>?, gradOutput: UnsafePointer<T>,
    gradInput: UnsafeMutablePointer<T>?, gradWeight: UnsafeMutablePointer<T>?,
    images: Range<Int>, _ z: Conv2dSizes, imagesPerChunk: Int, parallel: Bool, workspace: UnsafeMutablePointer<T>?
) {
    let (C, cg, O, og, K, P, HW) = (z.C, z.cg, z.O, z.og, z.K, z.P, z.HW)
    let gg = z.group
    let pointwise = gg.isPointwise
    let chunk = max(1, imagesPerChunk)
    let weightT = BlasOperand(transposed: true, leadingDimension: max(K, 1))
    var n0 = images.lowerBound
    while n0 < images.upperBound {
        let nb = min(chunk, images.upperBound - n0)
        let ld = nb == 1 ? max(P, 1) : nb * P
        let rowMajor = BlasOperand(transposed: false, leadingDimension: ld)
        let transposed = BlasOperand(transposed: true, leadingDimension: ld)
        // nb == 1: the workspace is one col matrix; else col [K, ld] then the gathered gradOutput [og, ld].
        let col = workspace, gathered = workspace.map { $0 + K * ld }
        for g in 0..<z.groups {
            let gOut0 = gradOutput + (n0 * O + g * og) * P
            let gOut: UnsafePointer<T>
            if nb == 1 {
                gOut = gOut0
            } else {
                let dst = gathered!
                conv2dForEachImage(nb, elementsPerImage: og * P, parallel: parallel) { i in
                    for o in 0..<og { (dst + o * ld + i * P).update(from: gOut0 + i * O * P + o * P, count: P) }
                }
                gOut = UnsafePointer(dst)
            }
            if let gradWeight, let input {
                let first = input + (n0 * C + g * cg) * HW
                let colMatrix: UnsafePointer<T>
                if nb == 1 && pointwise {
                    colMatrix = first
                } else if nb == 1 {
                    im2col(first, geometry: gg, col!)
                    colMatrix = UnsafePointer(col!)
                } else {
                    let dst = col!
                    conv2dForEachImage(nb, elementsPerImage: K * P, parallel: parallel) { i in
                        im2colChannels(first + i * C * HW, gg, dst + i * P, ld: ld, channels: 0..<cg)
                    }
                    colMatrix = UnsafePointer(dst)
                }
                T.gemm(m: og, n: K, k: nb * P, alpha: 1, a: gOut, aOp: rowMajor, b: colMatrix, bOp: transposed,
                       beta: n0 == images.lowerBound ? 0 : 1, c: gradWeight + g * og * K, ldc: max(K, 1))
            }
            if let gradInput, let weight {
                let first = gradInput + (n0 * C + g * cg) * HW
                let w = weight + g * og * K
                if nb == 1 && pointwise {
                    T.gemm(m: K, n: P, k: og, alpha: 1, a: w, aOp: weightT, b: gOut, bOp: rowMajor, beta: 0, c: first, ldc: ld)
                } else {
                    let dst = col!
                    T.gemm(m: K, n: ld, k: og, alpha: 1, a: w, aOp: weightT, b: gOut, bOp: rowMajor, beta: 0, c: dst, ldc: ld)
                    let src = UnsafePointer(dst)
                    conv2dForEachImage(nb, elementsPerImage: K * P, parallel: parallel) { i in
                        let img = first + i * C * HW
                        if pointwise {
                            for c in 0..<cg { (img + c * HW).update(from: src + c * ld + i * P, count: HW) }
                        } else {
                            img.update(repeating: 0, count: cg * HW)
                            col2imChannels(src + i * P, gg, ld: ld, img, channels: 0..<cg, clobberColumn: true)
                        }
                    }
                }
            }
        }
        n0 += nb
    }
}

/// Gradient of `conv2dForward` with respect to its input.
///
/// `gradOutput` dense `[batch, outChannels, outH, outW]`, `weight` dense
/// `[outChannels, C/groups, kh, kw]`; writes (overwrites) dense `gradInput [batch, C, H, W]`
/// as `col2im(W_gᵀ · gradOutput_g)` per image and group. See `conv2dBackward`.
@inlinable
public func conv2dBackwardData<T: GemmScalar>(
    gradOutput: UnsafePointer<T>, weight: UnsafePointer<T>, gradInput: UnsafeMutablePointer<T>,
    batch: Int, outChannels: Int, groups: Int, geometry: Conv2dGeometry, plan: Conv2dPlan = Conv2dPlan(),
    workspace: UnsafeMutablePointer<T>?
) {
    conv2dBackward(input: nil, weight: weight, gradOutput: gradOutput, gradInput: gradInput, gradWeight: nil,
                   batch: batch, outChannels: outChannels, groups: groups, geometry: geometry,
                   plan: plan, workspace: workspace)
}

/// Gradient of `conv2dForward` with respect to its weight.
///
/// `input` dense `[batch, C, H, W]`, `gradOutput` dense `[batch, outChannels, outH, outW]`;
/// writes (overwrites) dense `gradWeight [outChannels, C/groups, kh, kw]` as
/// `Σ_n gradOutput_{n,g} · col_{n,g}ᵀ` (zeros when batch is 0). See `conv2dBackward`.
@inlinable
public func conv2dBackwardWeight<T: GemmScalar>(
    input: UnsafePointer<T>, gradOutput: UnsafePointer<T>, gradWeight: UnsafeMutablePointer<T>,
    batch: Int, outChannels: Int, groups: Int, geometry: Conv2dGeometry, plan: Conv2dPlan = Conv2dPlan(),
    workspace: UnsafeMutablePointer<T>?
) {
    conv2dBackward(input: input, weight: nil, gradOutput: gradOutput, gradInput: nil, gradWeight: gradWeight,
                   batch: batch, outChannels: outChannels, groups: groups, geometry: geometry,
                   plan: plan, workspace: workspace)
}

