import TensorKernels

/// Shape rules shared by ops: each throws a `TensorError` naming the op and the shapes.
public enum ShapeRules {
    /// NumPy broadcasting of two shapes.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String) throws(TensorError) -> [Int] {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let da = i < r - a.count ? 1 : a[i - (r - a.count)]
            let db = i < r - b.count ? 1 : b[i - (r - b.count)]
            if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
                throw .shape(op, "\(shapeString(a)) and \(shapeString(b)) cannot be broadcast: dimension \(i) is \(da) vs \(db)")
            }
        }
        return out
    }

    /// The shape a reshape produces, resolving one -1.
    public static func reshape(_ shape: [Int], count: Int, to newShape: [Int]) throws(TensorError) -> [Int] {
        var out = newShape
        let unknown = newShape.indices.filter { newShape[$0] == -1 }
        guard unknown.count <= 1 else { throw .shape("reshape", "\(shapeString(newShape)) has more than one -1") }
        for s in newShape where s < -1 { throw .shape("reshape", "\(shapeString(newShape)) has a negative dimension") }
        if let u = unknown.first {
            let known = newShape.enumerated().filter { $0.offset != u }.reduce(1) { $0 * $1.element }
            guard known != 0, count % known == 0 else {
                throw .shape("reshape", "cannot reshape \(shapeString(shape)) (\(count) elements) to \(shapeString(newShape))")
            }
            out[u] = count / known
        }
        guard elementCount(out) == count else {
            throw .shape("reshape", "cannot reshape \(shapeString(shape)) (\(count) elements) to \(shapeString(newShape)) (\(elementCount(out)) elements)")
        }
        return out
    }
}

/// View ops: same storage, new shape / strides / offset. All differentiable.
extension Tensor {
    /// Strides that read this tensor as if it had `target` shape (broadcast dims get stride 0).
    public func broadcastStrides(to target: [Int]) -> [Int] {
        let r = target.count
        precondition(r >= rank, "broadcast: cannot broadcast \(shapeString(shape)) to lower rank \(shapeString(target))")
        var out = [Int](repeating: 0, count: r)
        for i in 0..<rank {
            let d = r - rank + i
            if shape[i] == target[d] { out[d] = strides[i] } else {
                precondition(shape[i] == 1, "broadcast: cannot broadcast \(shapeString(shape)) to \(shapeString(target))")
                out[d] = 0
            }
        }
        return out
    }

    func view(shape newShape: [Int], strides newStrides: [Int], offset newOffset: Int) -> Tensor {
        Tensor(storage: storage, shape: newShape, strides: newStrides, offset: newOffset, dtype: dtype, gradNode: nil)
    }

    /// Broadcasts to `target` without copying (stride 0 on expanded dims), like `torch.expand`.
    public func expand(_ target: [Int]) -> Tensor {
        if target == shape { return self }
        let _ = checked { () throws(TensorError) in try ShapeRules.broadcast(shape, target, op: "expand") }
        let out = view(shape: target, strides: broadcastStrides(to: target), offset: offset)
        let src = shape
        return out.recording("expand", inputs: [self]) { g in [g.sumTo(src)] }
    }

    /// Reshape (a view when the layout allows it, else a copy). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let target = checked { () throws(TensorError) in try ShapeRules.reshape(shape, count: count, to: newShape) }
        if target == shape { return self }
        let base = isContiguous ? self.detached() : contiguousCopy()
        let out = base.view(shape: target, strides: contiguousStrides(target), offset: base.offset)
        let src = shape
        return out.recording("reshape", inputs: [self]) { g in [g.reshaped(src)] }
    }

    /// Flattens dims `startDim...endDim` into one.
    public func flattened(startDim: Int = 0, endDim: Int = -1) -> Tensor {
        if rank == 0 { return reshaped([1]) }
        let s = normalizedDim(startDim, op: "flatten"), e = normalizedDim(endDim, op: "flatten")
        precondition(s <= e, "flatten: startDim \(startDim) after endDim \(endDim)")
        let newShape = Array(shape[..<s]) + [shape[s...e].reduce(1, *)] + Array(shape[(e + 1)...])
        return reshaped(newShape)
    }

    /// Reorders dimensions: `dims` is a permutation of `0..<rank`.
    public func permuted(_ dims: [Int]) -> Tensor {
        let d = dims.map { normalizedDim($0, op: "permute") }
        precondition(d.count == rank && Set(d).count == rank, "permute: \(dims) is not a permutation of the \(rank) dims of \(shapeString(shape))")
        let out = view(shape: d.map { shape[$0] }, strides: d.map { strides[$0] }, offset: offset)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, p) in d.enumerated() { inverse[p] = i }
        return out.recording("permute", inputs: [self]) { g in [g.permuted(inverse)] }
    }

    /// Swaps two dimensions.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var p = Array(0..<rank)
        p.swapAt(normalizedDim(a, op: "transpose"), normalizedDim(b, op: "transpose"))
        return permuted(p)
    }

    /// Matrix transpose of a 2-D tensor.
    public var T: Tensor {
        precondition(rank == 2, "T: expected a 2-D tensor, got \(shapeString(shape))")
        return transposed(0, 1)
    }

    /// The elements `start..<start+length` along `dim` (a view).
    public func narrowed(dim: Int, start: Int, length: Int) -> Tensor {
        let d = normalizedDim(dim, op: "narrow")
        precondition(start >= 0 && length >= 0 && start + length <= shape[d],
                     "narrow: start \(start) length \(length) out of range for dimension \(d) of size \(shape[d]) (shape \(shapeString(shape)))")
        var s = shape
        s[d] = length
        let out = view(shape: s, strides: strides, offset: offset + start * strides[d])
        let full = shape
        let dt = dtype
        return out.recording("narrow", inputs: [self]) { g in
            [g.padded(dim: d, before: start, after: full[d] - start - length, dtype: dt)]
        }
    }

    /// Slice `range` along `dim` with a step (a view).
    public func slice(dim: Int, _ range: Range<Int>, step: Int = 1) -> Tensor {
        precondition(step >= 1, "slice: step \(step) must be positive")
        let d = normalizedDim(dim, op: "slice")
        let n = narrowed(dim: d, start: range.lowerBound, length: range.count)
        if step == 1 { return n }
        var s = n.shape
        s[d] = (range.count + step - 1) / step
        var st = n.strides
        st[d] *= step
        let out = n.view(shape: s, strides: st, offset: n.offset)
        let src = n.shape
        return out.recording("narrow", inputs: [n]) { g in
            // Scatter back into a zero tensor at every step-th position.
            var z = Tensor.zeros(src, dtype: g.dtype)
            var zs = z.strides
            zs[d] *= step
            z.copyInto(shape: g.shape, strides: zs, offset: 0, from: g)
            return [z]
        }
    }

    /// Removes size-1 dimensions (all of them, or just `dim`).
    public func squeezed(dim: Int? = nil) -> Tensor {
        if let dim {
            let d = normalizedDim(dim, op: "squeeze")
            if shape[d] != 1 { return self }
            var s = shape; s.remove(at: d)
            return reshaped(s)
        }
        return reshaped(shape.filter { $0 != 1 })
    }

    /// Inserts a size-1 dimension at `dim` (may equal rank).
    public func unsqueezed(dim: Int) -> Tensor {
        let d = dim < 0 ? dim + rank + 1 : dim
        precondition(d >= 0 && d <= rank, "unsqueeze: dimension \(dim) out of range for rank \(rank)")
        var s = shape
        s.insert(1, at: d)
        return reshaped(s)
    }

    /// A dense row-major tensor with the same values (self when already dense).
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        let out = contiguousCopy()
        return out.recording("contiguous", inputs: [self]) { g in [g] }
    }

    /// Writes `src` into the strided region of this tensor's (unique) storage.
    mutating func copyInto(shape regionShape: [Int], strides regionStrides: [Int], offset regionOffset: Int, from src: Tensor) {
        precondition(src.dtype == dtype, "copy: dtype \(src.dtype) into \(dtype)")
        makeUnique()
        let dst = storage.pointer
        let srcStrides = src.broadcastStrides(to: regionShape)
        copyRaw(width: dtype.byteSize, src.storage.pointer, srcStrides: srcStrides, srcOffset: src.offset,
                dst, dstStrides: regionStrides, dstOffset: regionOffset, shape: regionShape)
    }

    /// Zero-pads `before` and `after` elements along `dim` into a new dense tensor.
    /// Differentiable (the gradient is the matching slice).
    public func padded(dim: Int, before: Int, after: Int) -> Tensor {
        let d = normalizedDim(dim, op: "pad")
        precondition(before >= 0 && after >= 0, "pad: before \(before) and after \(after) must be non-negative (shape \(shapeString(shape)))")
        return padded(dim: d, before: before, after: after, dtype: dtype)
    }

    /// Zero-pads along `dim` (used by narrow's gradient and by cat/split).
    func padded(dim: Int, before: Int, after: Int, dtype: DType) -> Tensor {
        var s = shape
        s[dim] += before + after
        var z = Tensor.zeros(s, dtype: dtype)
        let zs = z.strides
        z.copyInto(shape: shape, strides: zs, offset: before * zs[dim], from: self.detached())
        let length = shape[dim]
        return z.recording("pad", inputs: [self]) { g in [g.narrowed(dim: dim, start: before, length: length)] }
    }
}
