import TensorKernels

extension ShapeRules {
    /// Output shape of `matmul(a, b)` (1-D operands promoted as in NumPy; batch dims broadcast).
    public static func matmul(_ a: [Int], _ b: [Int]) throws(TensorError) -> [Int] {
        guard !a.isEmpty, !b.isEmpty else {
            throw .shape("matmul", "\(shapeString(a)) x \(shapeString(b)): both operands need at least one dimension")
        }
        let a2 = a.count == 1 ? [1, a[0]] : a
        let b2 = b.count == 1 ? [b[0], 1] : b
        let k1 = a2[a2.count - 1], k2 = b2[b2.count - 2]
        guard k1 == k2 else {
            throw .shape("matmul", "\(shapeString(a)) x \(shapeString(b)): inner dimensions \(k1) and \(k2) differ")
        }
        let batch = try broadcast(Array(a2.dropLast(2)), Array(b2.dropLast(2)), op: "matmul")
        var out = batch + [a2[a2.count - 2], b2[b2.count - 1]]
        if b.count == 1 { out.removeLast() }
        if a.count == 1 { out.remove(at: out.count - (b.count == 1 ? 1 : 2)) }
        return out
    }
}

extension Tensor {
    /// Matrix product with NumPy semantics: 2-D x 2-D, batched (leading dims broadcast),
    /// and 1-D operands promoted then squeezed. Runs on OpenBLAS; transposed views are
    /// passed to BLAS without copying.
    public func matmul(_ other: Tensor) -> Tensor {
        let outShape = checked { () throws(TensorError) in try ShapeRules.matmul(shape, other.shape) }
        precondition(dtype == other.dtype, "matmul: dtype mismatch \(dtype) vs \(other.dtype)")
        precondition(dtype.isFloatingPoint, "matmul: expected floating-point tensors, got \(dtype)")
        let a = rank == 1 ? detached().reshaped([1, shape[0]]) : detached()
        let b = other.rank == 1 ? other.detached().reshaped([other.shape[0], 1]) : other.detached()
        var out = Tensor.matmulRaw(a, b)
        out = out.view(shape: outShape, strides: contiguousStrides(outShape), offset: 0)
        let (x, y) = (self.detached(), other.detached())
        let (xs, ys) = (shape, other.shape)
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return out.recording("matmul", inputs: [self, other]) { g in
            // Promote 1-D operands back to matrices, then dA = g Bᵀ, dB = Aᵀ g, reduced over broadcast batch dims.
            let a2 = xs.count == 1 ? x.reshaped([1, xs[0]]) : x
            let b2 = ys.count == 1 ? y.reshaped([ys[0], 1]) : y
            var gShape = Array(outShape)
            if ys.count == 1 { gShape.append(1) }
            if xs.count == 1 { gShape.insert(1, at: gShape.count - 1) }
            let g2 = g.reshaped(gShape)
            let ga = needA ? g2.matmul(b2.transposed()).sumTo(a2.shape).reshaped(xs) : nil
            let gb = needB ? a2.transposed().matmul(g2).sumTo(b2.shape).reshaped(ys) : nil
            return [ga, gb]
        }
    }

    /// Batched-broadcast matmul of rank >= 2 operands, no autograd.
    static func matmulRaw(_ a: Tensor, _ b: Tensor) -> Tensor {
        if a.dtype.isReducedPrecision {
            return matmulRaw(a.to(.float32).detached(), b.to(.float32).detached()).to(a.dtype).detached()
        }
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        let batchShape = checked { () throws(TensorError) in
            try ShapeRules.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)), op: "matmul")
        }
        let out = Tensor(uninitializedShape: batchShape + [m, n], dtype: a.dtype)
        var A = a, B = b
        let aOp = A.asBlasOperand(rows: m, cols: k), bOp = B.asBlasOperand(rows: k, cols: n)
        let aBatchStrides = A.broadcastStrides(to: batchShape + [m, k]).dropLast(2)
        let bBatchStrides = B.broadcastStrides(to: batchShape + [k, n]).dropLast(2)
        func run<T: KernelFloat>(_: T.Type) {
            let pa = A.storage.pointer.assumingMemoryBound(to: T.self)
            let pb = B.storage.pointer.assumingMemoryBound(to: T.self)
            let pc = out.storage.pointer.assumingMemoryBound(to: T.self)
            let batches = elementCount(batchShape)
            if batches == 0 { return }
            // Walk batch indices; offsets from broadcast strides.
            var idx = [Int](repeating: 0, count: batchShape.count)
            for bi in 0..<batches {
                var ao = A.offset, bo = B.offset
                for d in 0..<batchShape.count { ao += idx[d] * aBatchStrides[d]; bo += idx[d] * bBatchStrides[d] }
                T.gemm(m: m, n: n, k: k, alpha: 1, a: pa + ao, aOp: aOp, b: pb + bo, bOp: bOp, beta: 0, c: pc + bi * m * n, ldc: Swift.max(n, 1))
                var d = batchShape.count - 1
                while d >= 0 { idx[d] += 1; if idx[d] < batchShape[d] { break }; idx[d] = 0; d -= 1 }
            }
        }
        if out.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out
    }

    /// `c += a · b` for matrices, as one GEMM with beta = 1 (no autograd, no temporary).
    /// `c` is made dense and uniquely owned first (a copy only if it was shared or strided).
    static func matmulAccumulate(_ a: Tensor, _ b: Tensor, into c: inout Tensor) {
        precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0] && c.shape == [a.shape[0], b.shape[1]],
                     "matmulAccumulate: \(shapeString(a.shape)) x \(shapeString(b.shape)) into \(shapeString(c.shape))")
        precondition(a.dtype == c.dtype && b.dtype == c.dtype && (c.dtype == .float32 || c.dtype == .float64),
                     "matmulAccumulate: expected Float32 or Float64 operands of one dtype, got \(a.dtype), \(b.dtype) into \(c.dtype)")
        let m = a.shape[0], k = a.shape[1], n = b.shape[1]
        c.makeUniqueDense()
        if m == 0 || n == 0 || k == 0 { return }
        var A = a, B = b
        let aOp = A.asBlasOperand(rows: m, cols: k), bOp = B.asBlasOperand(rows: k, cols: n)
        func run<T: KernelFloat>(_: T.Type) {
            T.gemm(m: m, n: n, k: k, alpha: 1, a: A.storage.pointer.assumingMemoryBound(to: T.self) + A.offset, aOp: aOp,
                   b: B.storage.pointer.assumingMemoryBound(to: T.self) + B.offset, bOp: bOp, beta: 1,
                   c: c.storage.pointer.assumingMemoryBound(to: T.self), ldc: n)
        }
        if c.dtype == .float32 { run(Float.self) } else { run(Double.self) }
    }

    /// How BLAS reads this tensor's last two dims as a `rows x cols` matrix (as is, or
    /// transposed); a layout BLAS cannot read is first replaced by a contiguous copy.
    mutating func asBlasOperand(rows: Int, cols: Int) -> BlasOperand {
        if let op = blasOperand(rows: rows, cols: cols, rowStride: strides[rank - 2], colStride: strides[rank - 1]) { return op }
        self = contiguousCopy()
        return blasOperand(rows: rows, cols: cols, rowStride: strides[rank - 2], colStride: strides[rank - 1])!
    }

    /// Batched matrix product of two 3-D tensors [b, m, k] x [b, k, n].
    public func bmm(_ other: Tensor) -> Tensor {
        precondition(rank == 3 && other.rank == 3 && shape[0] == other.shape[0],
                     "bmm: expected [b, m, k] x [b, k, n], got \(shapeString(shape)) x \(shapeString(other.shape))")
        return matmul(other)
    }
}
