import TensorKernels

extension ShapeRules {
    /// Output shape `[N, O, outH, outW]` of `conv2d` for input `[N, C, H, W]`, weight
    /// `[O, C/groups, kh, kw]` and optional bias `[O]`, where
    /// `outH = (H + 2·padding.0 − dilation.0·(kh − 1) − 1) / stride.0 + 1` (width alike).
    ///
    /// Throws when ranks or channel counts disagree, groups do not divide the channels,
    /// stride/dilation/groups are not positive, padding is negative, or the dilated
    /// kernel is larger than the padded input.
    public static func conv2dOutputShape(input: [Int], weight: [Int], bias: [Int]? = nil,
                                         stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                                         dilation: (Int, Int) = (1, 1), groups: Int = 1) throws(TensorError) -> [Int] {
        let op = "conv2d"
        guard input.count == 4 else {
            throw .shape(op, "input \(shapeString(input)) must be 4-D [N, C, H, W]")
        }
        guard weight.count == 4 else {
            throw .shape(op, "weight \(shapeString(weight)) must be 4-D [outChannels, inChannels / groups, kh, kw]")
        }
        guard stride.0 >= 1, stride.1 >= 1 else { throw .argument(op, "stride \(stride) must be positive") }
        guard dilation.0 >= 1, dilation.1 >= 1 else { throw .argument(op, "dilation \(dilation) must be positive") }
        guard padding.0 >= 0, padding.1 >= 0 else { throw .argument(op, "padding \(padding) must be non-negative") }
        guard groups >= 1 else { throw .argument(op, "groups \(groups) must be positive") }
        let (n, c, h, w) = (input[0], input[1], input[2], input[3])
        let (o, cg, kh, kw) = (weight[0], weight[1], weight[2], weight[3])
        guard c == cg * groups else {
            throw .shape(op, "input \(shapeString(input)) has \(c) channels, weight \(shapeString(weight)) expects \(cg) x groups \(groups)")
        }
        guard o % groups == 0 else {
            throw .shape(op, "weight \(shapeString(weight)) has \(o) output channels, not divisible by groups \(groups)")
        }
        guard kh >= 1, kw >= 1 else {
            throw .shape(op, "weight \(shapeString(weight)) has an empty kernel \(kh)x\(kw)")
        }
        if let bias, bias != [o] {
            throw .shape(op, "bias \(shapeString(bias)) does not match weight \(shapeString(weight)): expected [\(o)]")
        }
        let oh = Conv2dGeometry.outputSize(input: h, kernel: kh, stride: stride.0, padding: padding.0, dilation: dilation.0)
        let ow = Conv2dGeometry.outputSize(input: w, kernel: kw, stride: stride.1, padding: padding.1, dilation: dilation.1)
        guard oh >= 1, ow >= 1 else {
            let ekh = dilation.0 * (kh - 1) + 1, ekw = dilation.1 * (kw - 1) + 1
            throw .shape(op, "input \(shapeString(input)) padded to \(h + 2 * padding.0)x\(w + 2 * padding.1) is smaller than the kernel \(ekh)x\(ekw) (weight \(shapeString(weight)), dilation \(dilation))")
        }
        return [n, o, oh, ow]
    }

    /// Output shape of 2-D pooling (`op` is "maxPool2d" or "avgPool2d" for messages) over
    /// input `[N, C, H, W]` or `[C, H, W]`: the leading dims are kept and H, W become
    /// `floor_or_ceil((H + 2·padding.0 − kernel.0) / stride.0) + 1` (PyTorch's rule;
    /// `stride` nil means `kernel`).
    ///
    /// Throws on a rank other than 3 or 4, a non-positive kernel or stride, padding
    /// outside `0...kernel/2`, or a kernel larger than the padded input.
    public static func pool2dOutputShape(input: [Int], kernel: (Int, Int), stride: (Int, Int)? = nil,
                                         padding: (Int, Int) = (0, 0), ceilMode: Bool = false,
                                         op: String) throws(TensorError) -> [Int] {
        guard input.count == 3 || input.count == 4 else {
            throw .shape(op, "input \(shapeString(input)) must be 4-D [N, C, H, W] or 3-D [C, H, W]")
        }
        let s = stride ?? kernel
        guard kernel.0 >= 1, kernel.1 >= 1 else { throw .argument(op, "kernel \(kernel) must be positive") }
        guard s.0 >= 1, s.1 >= 1 else { throw .argument(op, "stride \(s) must be positive") }
        guard padding.0 >= 0, padding.1 >= 0, padding.0 <= kernel.0 / 2, padding.1 <= kernel.1 / 2 else {
            throw .argument(op, "padding \(padding) must be between 0 and half the kernel \(kernel)")
        }
        let h = input[input.count - 2], w = input[input.count - 1]
        let oh = Pool2dGeometry.outputSize(input: h, kernel: kernel.0, stride: s.0, padding: padding.0, ceilMode: ceilMode)
        let ow = Pool2dGeometry.outputSize(input: w, kernel: kernel.1, stride: s.1, padding: padding.1, ceilMode: ceilMode)
        guard oh >= 1, ow >= 1 else {
            throw .shape(op, "input \(shapeString(input)) padded to \(h + 2 * padding.0)x\(w + 2 * padding.1) is smaller than the kernel \(kernel.0)x\(kernel.1)")
        }
        return Array(input.dropLast(2)) + [oh, ow]
    }
}

/// Stride, padding, dilation and groups of a conv2d call.
struct Conv2dParams {
    var stride: (Int, Int)
    var padding: (Int, Int)
    var dilation: (Int, Int)
    var groups: Int

    /// The kernel geometry for input `[N, C, H, W]` and weight `[O, C/g, kh, kw]`.
    func geometry(input: [Int], weight: [Int]) -> Conv2dGeometry {
        Conv2dGeometry(channels: input[1], height: input[2], width: input[3], kernel: (weight[2], weight[3]),
                       stride: stride, padding: padding, dilation: dilation)
    }
}

extension Tensor {
    /// This tensor if dense, else a dense copy (no autograd); kernels read `pointer + offset`.
    fileprivate func denseForKernel() -> Tensor { isContiguous ? detached() : contiguousCopy() }

    /// Typed pointer to the first element of a dense tensor.
    fileprivate func elementPointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.pointer.assumingMemoryBound(to: T.self) + offset
    }

    /// The batch split (`Conv2dPlan`) and scratch storage (charged to `MemoryTag.workspace`)
    /// for the conv2d kernels over `batch` images.
    fileprivate static func convWorkspace(_ geometry: Conv2dGeometry, outChannels: Int, groups: Int, batch: Int,
                                          dtype: DType) -> (plan: Conv2dPlan, storage: TensorStorage) {
        let plan = Conv2dPlan(geometry: geometry, outChannels: outChannels, groups: groups, batch: batch,
                              elementSize: dtype.byteSize)
        let count = conv2dWorkspaceCount(geometry: geometry, outChannels: outChannels, groups: groups, plan: plan)
        return (plan, TensorStorage(byteCount: count * dtype.byteSize, tag: .workspace))
    }

    /// 2-D convolution (cross-correlation, as PyTorch's `conv2d`).
    ///
    /// Input `[N, C, H, W]`, weight `[O, C/groups, kh, kw]`, bias `[O]`; output
    /// `[N, O, outH, outW]` with
    /// `y[n, o, i, j] = b[o] + Σ w[o, c, p, q] · x[n, g·C/groups + c, i·sh − ph + p·dh, j·sw − pw + q·dw]`
    /// (zero padding; g is o's group; `outH = (H + 2·ph − dh·(kh − 1) − 1) / sh + 1`).
    /// Runs as im2col + OpenBLAS GEMM, several images per GEMM (see `Conv2dPlan`);
    /// Float16/BFloat16 compute in Float32. Differentiable in input, weight and bias.
    public func conv2d(_ weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let outShape = checked { () throws(TensorError) in
            try ShapeRules.conv2dOutputShape(input: shape, weight: weight.shape, bias: bias?.shape,
                                             stride: stride, padding: padding, dilation: dilation, groups: groups)
        }
        precondition(dtype.isFloatingPoint, "conv2d: expected floating-point tensors, got \(dtype)")
        precondition(weight.dtype == dtype && (bias?.dtype ?? dtype) == dtype,
                     "conv2d: dtype mismatch: input \(dtype), weight \(weight.dtype)\(bias.map { ", bias \($0.dtype)" } ?? "")")
        let params = Conv2dParams(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let x = detached(), w = weight.detached()
        let out = Tensor.conv2dRaw(x, w, bias?.detached(), params, outShape: outShape)
        let (xShape, wShape) = (shape, weight.shape)
        let needX = requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        let hasBias = bias != nil
        return out.recording("conv2d", inputs: inputs) { g in
            // One pass over g for both gradients (the kernel shares its gather and chunk loop).
            let (gx, gw) = (needX || needW)
                ? Tensor.conv2dBackwardRaw(x, w, g, inputShape: xShape, weightShape: wShape, params,
                                           needInput: needX, needWeight: needW)
                : (nil, nil)
            var grads: [Tensor?] = [gx, gw]
            if hasBias { grads.append(needB ? g.sum(dims: [0, 2, 3]) : nil) }
            return grads
        }
    }

    /// conv2d forward, no autograd.
    static func conv2dRaw(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ p: Conv2dParams, outShape: [Int]) -> Tensor {
        if x.dtype.isReducedPrecision { return conv2dHalfRaw(x, w, b, p, outShape: outShape) }
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let X = x.denseForKernel(), W = w.denseForKernel(), B = b?.denseForKernel()
        let geometry = p.geometry(input: x.shape, weight: w.shape)
        let (plan, ws) = convWorkspace(geometry, outChannels: w.shape[0], groups: p.groups, batch: x.shape[0], dtype: x.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            conv2dForward(input: X.elementPointer(T.self), weight: W.elementPointer(T.self),
                          bias: B.map { UnsafePointer($0.elementPointer(T.self)) },
                          output: out.elementPointer(T.self), batch: x.shape[0], outChannels: w.shape[0], groups: p.groups,
                          geometry: geometry, plan: plan, workspace: ws.pointer.assumingMemoryBound(to: T.self))
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime((X, W, B, ws)) {}
        return out
    }

    /// Gradients of conv2d with respect to its input and/or weight (those asked for), no autograd.
    static func conv2dBackwardRaw(_ x: Tensor, _ w: Tensor, _ g: Tensor, inputShape: [Int], weightShape: [Int], _ p: Conv2dParams,
                                  needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?) {
        if g.dtype.isReducedPrecision {
            return conv2dBackwardHalfRaw(x, w, g, inputShape: inputShape, weightShape: weightShape, p,
                                         needInput: needInput, needWeight: needWeight)
        }
        let gx = needInput ? Tensor(uninitializedShape: inputShape, dtype: g.dtype) : nil
        let gw = needWeight ? Tensor(uninitializedShape: weightShape, dtype: g.dtype) : nil
        let G = g.denseForKernel()
        let X = needWeight ? x.denseForKernel() : nil, W = needInput ? w.denseForKernel() : nil
        let geometry = p.geometry(input: inputShape, weight: weightShape)
        let (plan, ws) = convWorkspace(geometry, outChannels: weightShape[0], groups: p.groups, batch: inputShape[0], dtype: g.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            conv2dBackward(input: X.map { UnsafePointer($0.elementPointer(T.self)) },
                           weight: W.map { UnsafePointer($0.elementPointer(T.self)) },
                           gradOutput: G.elementPointer(T.self),
                           gradInput: gx?.elementPointer(T.self), gradWeight: gw?.elementPointer(T.self),
                           batch: inputShape[0], outChannels: weightShape[0], groups: p.groups, geometry: geometry,
                           plan: plan, workspace: ws.pointer.assumingMemoryBound(to: T.self))
        }
        if g.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime((G, X, W, ws)) {}
        return (gx, gw)
    }
}

// MARK: - Half precision, chunked

extension Tensor {
    /// Images per chunk of a Float16/BFloat16 conv2d call whose Float32 copies take
    /// `floatsPerImage` elements an image: as many as fit the conv workspace budget
    /// (`Conv2dPlan.budgetBytes`, `loom train --workspace-limit`), at least one.
    static func halfConvChunk(batch: Int, floatsPerImage: Int) -> Int {
        Swift.max(1, Swift.min(batch, Conv2dPlan.budgetBytes / Swift.max(1, floatsPerImage * 4)))
    }

    /// Writes the Float32 tensor `src` (contiguous) rounded to `dtype` at element `at` of
    /// the contiguous half tensor `dst`.
    static func storeRounded(_ src: Tensor, into dst: Tensor, at: Int) {
        let s = src.isContiguous ? src : src.contiguousCopy()
        let from = UnsafePointer(s.storage.pointer.assumingMemoryBound(to: Float.self) + s.offset)
        switch dst.dtype {
        case .float16:
            convertFloatToHalf(from, dst.storage.pointer.assumingMemoryBound(to: Float16.self) + dst.offset + at, count: s.count)
        case .bfloat16:
            convertFloatToBFloat16(from, dst.storage.pointer.assumingMemoryBound(to: BFloat16.self) + dst.offset + at, count: s.count)
        default:
            preconditionFailure("storeRounded: expected a Float16 or BFloat16 destination, got \(dst.dtype)")
        }
        withExtendedLifetime(s) {}
    }

    /// conv2d of a Float16/BFloat16 input, computed in Float32 (this CPU has no half GEMM)
    /// one chunk of images at a time: only a chunk's input and output exist in Float32 at
    /// once (`halfConvChunk`), so the Float32 copies follow the workspace budget instead of
    /// being whole-batch sized. Each output element is the same Float32 sum as in an
    /// unchunked call, rounded once.
    static func conv2dHalfRaw(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ p: Conv2dParams, outShape: [Int]) -> Tensor {
        let half = x.dtype, n = x.shape[0]
        let w32 = w.to(.float32).detached(), b32 = b?.to(.float32).detached()
        let outPer = outShape.dropFirst().reduce(1, *), inPer = x.shape.dropFirst().reduce(1, *)
        let step = halfConvChunk(batch: n, floatsPerImage: inPer + outPer)
        let out = Tensor(uninitializedShape: outShape, dtype: half)
        var i = 0
        while i < n {
            let m = Swift.min(step, n - i)
            let xs = x.narrowed(dim: 0, start: i, length: m).detached().to(.float32)
            let ys = conv2dRaw(xs, w32, b32, p, outShape: [m] + outShape.dropFirst())
            storeRounded(ys, into: out, at: i * outPer)
            i += m
        }
        return out
    }

    /// Gradients of a Float16/BFloat16 conv2d, computed in Float32 one chunk of images at a
    /// time (see `conv2dHalfRaw`): the input gradient is rounded chunk by chunk; the weight
    /// gradient is summed over the chunks in Float32 and rounded once. (Chunked, the weight
    /// gradient's sum over images is grouped per chunk: equal to the unchunked one up to
    /// Float32 rounding.)
    static func conv2dBackwardHalfRaw(_ x: Tensor, _ w: Tensor, _ g: Tensor, inputShape: [Int], weightShape: [Int],
                                      _ p: Conv2dParams, needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?) {
        let half = g.dtype, n = inputShape[0]
        let w32 = needInput ? w.to(.float32).detached() : w
        let inPer = inputShape.dropFirst().reduce(1, *), outPer = g.shape.dropFirst().reduce(1, *)
        let step = halfConvChunk(batch: n, floatsPerImage: (needWeight ? inPer : 0) + outPer + (needInput ? inPer : 0))
        let gx = needInput ? Tensor(uninitializedShape: inputShape, dtype: half) : nil
        var gw: Tensor? = nil
        var i = 0
        while i < n {
            let m = Swift.min(step, n - i)
            let xs = needWeight ? x.narrowed(dim: 0, start: i, length: m).detached().to(.float32) : x
            let gs = g.narrowed(dim: 0, start: i, length: m).detached().to(.float32)
            let (gxs, gws) = conv2dBackwardRaw(xs, w32, gs, inputShape: [m] + inputShape.dropFirst(), weightShape: weightShape, p,
                                               needInput: needInput, needWeight: needWeight)
            if let gx, let gxs { storeRounded(gxs, into: gx, at: i * inPer) }
            if let gws {
                if gw == nil { gw = gws } else { gw = noGrad { gw! + gws } }
            }
            i += m
        }
        return (gx, gw?.to(half).detached())
    }
}

// MARK: - Pooling

extension Tensor {
    /// Number of planes (product of the leading dims) and the pooling geometry of the last two dims.
    fileprivate func poolGeometry(kernel: (Int, Int), stride: (Int, Int)?, padding: (Int, Int), ceilMode: Bool) -> (Int, Pool2dGeometry) {
        let planes = shape.dropLast(2).reduce(1, *)
        let g = Pool2dGeometry(height: shape[rank - 2], width: shape[rank - 1], kernel: kernel, stride: stride ?? kernel,
                               padding: padding, ceilMode: ceilMode)
        return (planes, g)
    }

    /// 2-D max pooling over the last two dims of `[N, C, H, W]` (or `[C, H, W]`).
    ///
    /// Each output is the maximum of its `kernel` window (padding counts as −inf; NaN
    /// propagates); `stride` nil means `stride = kernel`, as in PyTorch. Differentiable:
    /// the gradient goes to the (first) maximum of each window.
    public func maxPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0), ceilMode: Bool = false) -> Tensor {
        maxPool2dWithIndices(kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode).values
    }

    /// 2-D max pooling that also returns, for every output, the index of its maximum
    /// within the input plane (`ih·W + iw`, Int64), as PyTorch's `return_indices=True`.
    public func maxPool2dWithIndices(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                                     ceilMode: Bool = false) -> (values: Tensor, indices: Tensor) {
        let outShape = checked { () throws(TensorError) in
            try ShapeRules.pool2dOutputShape(input: shape, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode, op: "maxPool2d")
        }
        precondition(dtype.isFloatingPoint, "maxPool2d: expected a floating-point tensor, got \(dtype)")
        let (planes, geometry) = poolGeometry(kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
        let (values, indices) = Tensor.maxPool2dRaw(detached(), planes: planes, geometry, outShape: outShape)
        let inShape = shape
        let recorded = values.recording("maxPool2d", inputs: [self]) { g in
            [Tensor.maxPool2dBackwardRaw(g, indices, inputShape: inShape, planes: planes, geometry)]
        }
        return (recorded, indices)
    }

    static func maxPool2dRaw(_ x: Tensor, planes: Int, _ geometry: Pool2dGeometry, outShape: [Int]) -> (Tensor, Tensor) {
        if x.dtype.isReducedPrecision {
            let (v, i) = maxPool2dRaw(x.to(.float32).detached(), planes: planes, geometry, outShape: outShape)
            return (v.to(x.dtype).detached(), i)
        }
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let indices = Tensor(uninitializedShape: outShape, dtype: .int64)
        let X = x.denseForKernel()
        func run<T: KernelFloat>(_: T.Type) {
            maxPool2dForward(X.elementPointer(T.self), planes: planes, geometry: geometry, out.elementPointer(T.self),
                             indices: indices.elementPointer(Int64.self))
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime(X) {}
        return (out, indices)
    }

    static func maxPool2dBackwardRaw(_ g: Tensor, _ indices: Tensor, inputShape: [Int], planes: Int, _ geometry: Pool2dGeometry) -> Tensor {
        if g.dtype.isReducedPrecision {
            return maxPool2dBackwardRaw(g.to(.float32).detached(), indices, inputShape: inputShape, planes: planes, geometry)
                .to(g.dtype).detached()
        }
        let out = Tensor(uninitializedShape: inputShape, dtype: g.dtype)
        let G = g.denseForKernel()
        func run<T: KernelFloat>(_: T.Type) {
            maxPool2dBackward(G.elementPointer(T.self), indices: indices.elementPointer(Int64.self), planes: planes,
                              geometry: geometry, out.elementPointer(T.self))
        }
        if g.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime((G, indices)) {}
        return out
    }

    /// 2-D average pooling over the last two dims of `[N, C, H, W]` (or `[C, H, W]`).
    ///
    /// Padding counts as zeros; the divisor is the window size (clipped to the padded
    /// input) when `countIncludePad` (PyTorch's default), else the number of real input
    /// elements in the window. `stride` nil means `stride = kernel`. Differentiable.
    public func avgPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                          countIncludePad: Bool = true, ceilMode: Bool = false) -> Tensor {
        let outShape = checked { () throws(TensorError) in
            try ShapeRules.pool2dOutputShape(input: shape, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode, op: "avgPool2d")
        }
        precondition(dtype.isFloatingPoint, "avgPool2d: expected a floating-point tensor, got \(dtype)")
        let (planes, geometry) = poolGeometry(kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
        let out = Tensor.avgPool2dRaw(detached(), planes: planes, geometry, countIncludePad: countIncludePad, outShape: outShape)
        let inShape = shape
        return out.recording("avgPool2d", inputs: [self]) { g in
            [Tensor.avgPool2dBackwardRaw(g, inputShape: inShape, planes: planes, geometry, countIncludePad: countIncludePad)]
        }
    }

    static func avgPool2dRaw(_ x: Tensor, planes: Int, _ geometry: Pool2dGeometry, countIncludePad: Bool, outShape: [Int]) -> Tensor {
        if x.dtype.isReducedPrecision {
            return avgPool2dRaw(x.to(.float32).detached(), planes: planes, geometry, countIncludePad: countIncludePad, outShape: outShape)
                .to(x.dtype).detached()
        }
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let X = x.denseForKernel()
        func run<T: KernelFloat>(_: T.Type) {
            avgPool2dForward(X.elementPointer(T.self), planes: planes, geometry: geometry, countIncludePad: countIncludePad,
                             out.elementPointer(T.self))
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime(X) {}
        return out
    }

    static func avgPool2dBackwardRaw(_ g: Tensor, inputShape: [Int], planes: Int, _ geometry: Pool2dGeometry, countIncludePad: Bool) -> Tensor {
        if g.dtype.isReducedPrecision {
            return avgPool2dBackwardRaw(g.to(.float32).detached(), inputShape: inputShape, planes: planes, geometry,
                                        countIncludePad: countIncludePad).to(g.dtype).detached()
        }
        let out = Tensor(uninitializedShape: inputShape, dtype: g.dtype)
        let G = g.denseForKernel()
        func run<T: KernelFloat>(_: T.Type) {
            avgPool2dBackward(G.elementPointer(T.self), planes: planes, geometry: geometry, countIncludePad: countIncludePad,
                              out.elementPointer(T.self))
        }
        if g.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        withExtendedLifetime(G) {}
        return out
    }
}
