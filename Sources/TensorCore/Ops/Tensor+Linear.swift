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
    ///
    /// Mixed precision (autocast): with a Float16/BFloat16 input and a Float32 weight and
    /// bias, the output and the input gradient are half, and the weight and bias gradients are
    /// computed in Float32 from the widened gradient and input, straight into the Float32
    /// master's `.grad` (fused as above). Loom's half GEMMs compute in Float32 on this CPU,
    /// so the product uses the Float32 master itself, not a half copy of it: no weight-sized
    /// temporary, nothing weight-sized saved for backward, and one rounding (of the output)
    /// instead of two (weight and output).
    public func linear(_ weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && shape[rank - 1] == weight.shape[1],
                     "linear: input \(shapeString(shape)) and weight \(shapeString(weight.shape)): expected [..., in] and [out, in]")
        // Mixed precision: a half input with Float32 master weight and bias (autocast).
        let mixed = dtype.isReducedPrecision && weight.dtype == .float32
        precondition((dtype == weight.dtype || mixed) && dtype.isFloatingPoint,
                     "linear: input \(dtype) and weight \(weight.dtype): expected one floating-point dtype, or a half input with a Float32 weight")
        if let bias {
            precondition(bias.shape == [weight.shape[0]] && bias.dtype == weight.dtype,
                         "linear: bias \(shapeString(bias.shape)) \(bias.dtype): expected [\(weight.shape[0])] \(weight.dtype)")
        }
        let inF = weight.shape[1], outF = weight.shape[0]
        let rows = count / Swift.max(inF, 1)
        let x2 = detached().reshaped([rows, inF])
        let w = weight.detached()
        var y: Tensor
        if mixed {
            // Half GEMMs run in Float32 on this CPU anyway: multiply by the Float32 master
            // directly (no weight-sized half or Float32 copy) and round the output once.
            y = Tensor.matmulRaw(x2.to(.float32), w.transposed(0, 1))
            if let bias { y = noGrad { y + bias.detached() } }
            y = y.to(dtype)
        } else {
            y = Tensor.matmulRaw(x2, w.transposed(0, 1))
            if let bias { y = noGrad { y + bias.detached() } }
        }
        let outShape = Array(shape.dropLast()) + [outF]
        let out = y.reshaped(outShape)
        let (needX, needB) = (requiresGrad, bias?.requiresGrad ?? false)
        let wNode = weight.gradNode
        let xShape = shape, xDType = dtype
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        let hasBias = bias != nil
        return out.recording("linear", inputs: inputs) { g in
            let g2 = g.reshaped([rows, outF])
            // Weight and bias gradients in the weight's type (Float32 for a mixed call, where
            // the product is accumulated in Float32 from the widened g and x).
            let gWide = mixed ? g2.to(.float32) : g2
            let gx = needX ? (mixed ? Tensor.matmulRaw(gWide, w).to(xDType) : Tensor.matmulRaw(g2, w)).reshaped(xShape) : nil
            var gw: Tensor? = nil
            if let wNode {
                let xWide = mixed ? x2.to(.float32) : x2
                let fused = gWide.dtype == wNode.dtype && wNode.accumulateFused { existing in
                    if existing == nil {
                        existing = Memory.withTag(.gradients) { Tensor.matmulRaw(gWide.transposed(0, 1), xWide) }
                    } else {
                        Tensor.matmulAccumulate(gWide.transposed(0, 1), xWide, into: &existing!)
                    }
                }
                if !fused { gw = Tensor.matmulRaw(gWide.transposed(0, 1), xWide) }
            }
            let gb = needB ? gWide.sum(dim: 0) : nil
            return hasBias ? [gx, gw, gb] : [gx, gw]
        }
    }
}
