extension Tensor {
    /// `x · weightᵀ + bias` over the last dimension (PyTorch's `F.linear`): input
    /// `[..., in]`, weight `[out, in]`, bias `[out]`, output `[..., out]`. One graph node.
    ///
    /// Its backward fuses gradient accumulation into the weight-gradient GEMM (Megatron-LM's
    /// `gradient_accumulation_fusion`): when `weight` is a leaf that already holds a `.grad`
    /// (the second and later micro-batches of an accumulated step), `grad += gᵀ · x` runs as
    /// one GEMM with beta = 1 into the existing buffer instead of computing a weight-sized
    /// temporary and adding it; on the first contribution the GEMM writes the new `.grad`
    /// directly. A weight with tensor hooks (they must see the contribution) or of another
    /// dtype than the product (autocast) takes the ordinary path. Post-accumulate hooks fire
    /// once the weight's gradient is final, as for any leaf. The sums equal the unfused
    /// ones up to rounding: OpenBLAS orders the additions of a beta = 1 GEMM differently
    /// from a GEMM followed by an add (measured: last-ulp differences, within 1e-6 relative).
    public func linear(_ weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && shape[rank - 1] == weight.shape[1],
                     "linear: input \(shapeString(shape)) and weight \(shapeString(weight.shape)): expected [..., in] and [out, in]")
        precondition(dtype == weight.dtype && dtype.isFloatingPoint, "linear: dtypes \(dtype) and \(weight.dtype): expected one floating-point dtype")
        if let bias {
            precondition(bias.shape == [weight.shape[0]] && bias.dtype == dtype,
                         "linear: bias \(shapeString(bias.shape)) \(bias.dtype): expected [\(weight.shape[0])] \(dtype)")
        }
        let inF = weight.shape[1], outF = weight.shape[0]
        let rows = count / Swift.max(inF, 1)
        let x2 = detached().reshaped([rows, inF])
        let w = weight.detached()
        var y = Tensor.matmulRaw(x2, w.transposed(0, 1))
        if let bias { y = noGrad { y + bias.detached() } }
        let outShape = Array(shape.dropLast()) + [outF]
        let out = y.reshaped(outShape)
        let (needX, needB) = (requiresGrad, bias?.requiresGrad ?? false)
        let wNode = weight.gradNode
        let xShape = shape
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        let hasBias = bias != nil
        return out.recording("linear", inputs: inputs) { g in
            let g2 = g.reshaped([rows, outF])
            let gx = needX ? Tensor.matmulRaw(g2, w).reshaped(xShape) : nil
            var gw: Tensor? = nil
            if let wNode {
                let fused = g2.dtype == wNode.dtype && wNode.accumulateFused { existing in
                    if existing == nil {
                        existing = Memory.withTag(.gradients) { Tensor.matmulRaw(g2.transposed(0, 1), x2) }
                    } else {
                        Tensor.matmulAccumulate(g2.transposed(0, 1), x2, into: &existing!)
                    }
                }
                if !fused { gw = Tensor.matmulRaw(g2.transposed(0, 1), x2) }
            }
            let gb = needB ? g2.sum(dim: 0) : nil
            return hasBias ? [gx, gw, gb] : [gx, gw]
        }
    }
}
