import TensorKernels

/// Conversion between dtypes.
extension Tensor {
    /// This tensor converted to `dtype` (a no-op when it already has it). Differentiable
    /// between floating-point types: the gradient is converted back.
    public func to(_ newType: DType) -> Tensor {
        if newType == dtype { return self }
        var out = Tensor(uninitializedShape: shape, dtype: newType)
        let src = isContiguous ? self : contiguousCopy()
        let n = count
        let sp = src.storage.pointer
        let dp = out.storage.pointer
        let so = src.offset
        switch (dtype, newType) {
        case (.float32, .float16):
            convertFloatToHalf(sp.assumingMemoryBound(to: Float.self) + so, dp.assumingMemoryBound(to: Float16.self), count: n)
        case (.float16, .float32):
            convertHalfToFloat(sp.assumingMemoryBound(to: Float16.self) + so, dp.assumingMemoryBound(to: Float.self), count: n)
        case (.float32, .bfloat16):
            convertFloatToBFloat16(sp.assumingMemoryBound(to: Float.self) + so, dp.assumingMemoryBound(to: BFloat16.self), count: n)
        case (.bfloat16, .float32):
            convertBFloat16ToFloat(sp.assumingMemoryBound(to: BFloat16.self) + so, dp.assumingMemoryBound(to: Float.self), count: n)
        case (.float32, .float64):
            let s = sp.assumingMemoryBound(to: Float.self) + so, d = dp.assumingMemoryBound(to: Double.self)
            for i in 0..<n { d[i] = Double(s[i]) }
        case (.float64, .float32):
            let s = sp.assumingMemoryBound(to: Double.self) + so, d = dp.assumingMemoryBound(to: Float.self)
            for i in 0..<n { d[i] = Float(s[i]) }
        default:
            // Generic path through Double (exact for all but huge Int64; half types round once).
            dispatchAnyType(dtype) { (st: any TensorElement.Type) in
                dispatchAnyType(newType) { (dt: any TensorElement.Type) in
                    func convert<S: TensorElement, D: TensorElement>(_: S.Type, _: D.Type) {
                        let s = sp.assumingMemoryBound(to: S.self) + so, d = dp.assumingMemoryBound(to: D.self)
                        if newType.isReducedPrecision && dtype != .float32 {
                            for i in 0..<n { d[i] = D(loomDouble: Double(Float(s[i].loomDouble))) }
                        } else {
                            for i in 0..<n { d[i] = D(loomDouble: s[i].loomDouble) }
                        }
                    }
                    convert(st, dt)
                }
            }
        }
        let from = dtype
        guard from.isFloatingPoint && newType.isFloatingPoint else { return out }
        return out.recording("to", inputs: [self]) { g in [g.to(from)] }
    }
}
