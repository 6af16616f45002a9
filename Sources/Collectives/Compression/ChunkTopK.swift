import TensorCore

/// Coarse-grained sparsification with error feedback: a gradient is cut into fixed-size
/// chunks, only the `topChunks` chunks of largest L2 norm are sent, and everything not
/// sent stays in a local residual that is added to the next step's gradient
/// (error feedback, as in Strom 2015 / Lin et al. 2018 "Deep Gradient Compression",
/// at chunk rather than element granularity so indices cost one Int32 per chunk).
///
/// Invariant after `compress`: `sent + residual == gradient + previousResidual`
/// exactly (each element is either sent unchanged or kept in the residual), so over
/// steps the sum of sent updates equals the sum of inputs minus the current residual.
/// Not thread-safe: one compressor per gradient buffer per rank.
public final class ChunkTopKCompressor {
    /// Elements per gradient.
    public let count: Int
    /// Elements per chunk (the last chunk may be shorter).
    public let chunkSize: Int
    /// Chunks sent per step (at most the number of chunks).
    public let topChunks: Int
    /// What has not been sent yet (error feedback), `count` elements.
    public private(set) var residual: [Float]

    /// Number of chunks, `ceil(count / chunkSize)`.
    public var chunkCount: Int { (count + chunkSize - 1) / chunkSize }

    /// Creates a compressor for gradients of `count` elements.
    public init(count: Int, chunkSize: Int, topChunks: Int) {
        precondition(count >= 0 && chunkSize >= 1 && topChunks >= 0,
                     "ChunkTopKCompressor: count \(count) >= 0, chunkSize \(chunkSize) >= 1 and topChunks \(topChunks) >= 0 expected")
        self.count = count
        self.chunkSize = chunkSize
        self.residual = [Float](repeating: 0, count: count)
        self.topChunks = Swift.min(topChunks, (count + chunkSize - 1) / chunkSize)
    }

    /// Adds the residual to `gradient`, picks the `topChunks` chunks of largest L2 norm
    /// (ties: lower index first), and keeps the rest as the new residual.
    /// O(count + c log c) for c chunks.
    public func compress(_ gradient: UnsafeBufferPointer<Float>) -> SparseChunks {
        precondition(gradient.count == count, "ChunkTopKCompressor.compress: gradient has \(gradient.count) elements, expected \(count)")
        let nChunks = chunkCount
        var norms = [Float](repeating: 0, count: nChunks)
        residual.withUnsafeMutableBufferPointer { res in
            for i in 0..<count { res[i] += gradient[i] }
            for c in 0..<nChunks {
                let lo = c * chunkSize, hi = Swift.min(lo + chunkSize, count)
                var s: Float = 0
                for i in lo..<hi { s += res[i] * res[i] }
                norms[c] = s
            }
        }
        let order = (0..<nChunks).sorted { norms[$0] != norms[$1] ? norms[$0] > norms[$1] : $0 < $1 }
        let picked = order.prefix(topChunks).sorted()
        var values = [Float](repeating: 0, count: topChunks * chunkSize)
        residual.withUnsafeMutableBufferPointer { res in
            values.withUnsafeMutableBufferPointer { v in
                for (k, c) in picked.enumerated() {
                    let lo = c * chunkSize, hi = Swift.min(lo + chunkSize, count)
                    for i in lo..<hi { v[k * chunkSize + i - lo] = res[i]; res[i] = 0 }
                }
            }
        }
        return SparseChunks(count: count, chunkSize: chunkSize, chunkIndices: picked.map { Int32($0) }, values: values)
    }
}

/// The sent part of a gradient: whole chunks with their indices.
public struct SparseChunks: Sendable, Equatable {
    /// Elements of the dense gradient.
    public var count: Int
    /// Elements per chunk.
    public var chunkSize: Int
    /// Ascending chunk indices.
    public var chunkIndices: [Int32]
    /// `chunkIndices.count * chunkSize` values (a short last chunk is zero-padded).
    public var values: [Float]

    /// Adds the chunks into a dense buffer of `count` elements.
    public func accumulate(into dense: UnsafeMutableBufferPointer<Float>) {
        precondition(dense.count == count, "SparseChunks.accumulate: dense has \(dense.count) elements, expected \(count)")
        values.withUnsafeBufferPointer { v in
            for (k, c32) in chunkIndices.enumerated() {
                let lo = Int(c32) * chunkSize, hi = Swift.min(lo + chunkSize, count)
                for i in lo..<hi { dense[i] += v[k * chunkSize + i - lo] }
            }
        }
    }

    /// The dense form (zeros outside the sent chunks).
    public func dense() -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { accumulate(into: $0) }
        return out
    }
}

extension ProcessGroup {
    /// Sparse allreduce with error feedback: every rank sends its top chunks (after adding
    /// its residual) by two all-gathers (indices, values), and `gradient` becomes the sum
    /// (or average) over ranks of the sent chunks, added in rank order. The unsent rest
    /// stays in `compressor.residual`. Every rank must use the same `chunkSize` and
    /// `topChunks`. Bytes per rank: `p · k · (chunkSize · 4 + 4)`.
    public func sparseAllReduce(_ gradient: UnsafeMutableBufferPointer<Float>, compressor: ChunkTopKCompressor,
                                average: Bool = false, options: CollectiveOptions = .native) throws {
        let sent = compressor.compress(UnsafeBufferPointer(gradient))
        let k = sent.chunkIndices.count, cs = sent.chunkSize, p = size
        var allIdx = [Int32](repeating: 0, count: k * p)
        var allVals = [Float](repeating: 0, count: k * cs * p)
        var idx = sent.chunkIndices, vals = sent.values
        try idx.withUnsafeMutableBufferPointer { i in
            try allIdx.withUnsafeMutableBufferPointer { ai in
                try allGather(send: CollectiveBuffer(i), recv: CollectiveBuffer(ai), counts: Array(repeating: k, count: p), options: options)
            }
        }
        try vals.withUnsafeMutableBufferPointer { v in
            try allVals.withUnsafeMutableBufferPointer { av in
                try allGather(send: CollectiveBuffer(v), recv: CollectiveBuffer(av), counts: Array(repeating: k * cs, count: p), options: options)
            }
        }
        for i in 0..<gradient.count { gradient[i] = 0 }
        for r in 0..<p {
            SparseChunks(count: compressor.count, chunkSize: cs, chunkIndices: Array(allIdx[r * k..<(r + 1) * k]),
                         values: Array(allVals[r * k * cs..<(r + 1) * k * cs])).accumulate(into: gradient)
        }
        if average { let f = Float(p); for i in 0..<gradient.count { gradient[i] /= f } }
    }
}
