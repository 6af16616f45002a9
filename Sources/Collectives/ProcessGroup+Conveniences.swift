import TensorCore

// MARK: - Blocking forms and conveniences

extension ProcessGroup {
    /// In-place all-reduce of raw memory (blocking).
    public func allReduce(_ buffer: CollectiveBuffer, op: ReduceOp = .sum, options: CollectiveOptions = .native) throws {
        try allReduceAsync(buffer, op: op, options: options).wait()
    }

    /// In-place all-reduce of a flat Float32 buffer (a DDP bucket).
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp = .sum, options: CollectiveOptions = .native) throws {
        try allReduce(CollectiveBuffer(buffer), op: op, options: options)
    }

    /// In-place all-reduce of a flat Float64 buffer.
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp = .sum, options: CollectiveOptions = .native) throws {
        try allReduce(CollectiveBuffer(buffer), op: op, options: options)
    }

    /// In-place all-reduce of a tensor (float32/float64/int32/int64). A view or shared
    /// tensor is first made a dense unique copy (copy-on-write), so other values that
    /// shared its storage keep their data.
    public func allReduce(_ tensor: inout Tensor, op: ReduceOp = .sum, options: CollectiveOptions = .native) throws {
        let buffer = try Self.denseBuffer(&tensor, rank: rank, op: "allReduce")
        try allReduce(buffer, op: op, options: options)
    }

    /// Starts an all-reduce of a tensor; `wait()` returns the reduced tensor. The input
    /// value is not modified (it is copied if its storage is shared).
    public func allReduceAsync(_ tensor: Tensor, op: ReduceOp = .sum, options: CollectiveOptions = .native) -> TensorWork {
        let box = TensorBox(tensor)
        do {
            let buffer = try Self.denseBuffer(&box.tensor, rank: rank, op: "allReduce")
            return TensorWork(work: allReduceAsync(buffer, op: op, options: options), box: box)
        } catch {
            return TensorWork(work: .failed(error, op: "allReduce"), box: box)
        }
    }

    /// Reduce-scatter (blocking); see `reduceScatterAsync`.
    public func reduceScatter(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp = .sum, options: CollectiveOptions = .native) throws {
        try reduceScatterAsync(send: send, recv: recv, counts: counts, op: op, options: options).wait()
    }

    /// All-gather (blocking); see `allGatherAsync`.
    public func allGather(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], options: CollectiveOptions = .native) throws {
        try allGatherAsync(send: send, recv: recv, counts: counts, options: options).wait()
    }

    /// Broadcast from `root` (blocking).
    public func broadcast(_ buffer: CollectiveBuffer, root: Int) throws {
        try broadcastAsync(buffer, root: root).wait()
    }

    /// Broadcast of a tensor from `root` into every rank's tensor (same shape and dtype
    /// on every rank).
    public func broadcast(_ tensor: inout Tensor, root: Int) throws {
        let buffer = try Self.denseBuffer(&tensor, rank: rank, op: "broadcast")
        try broadcast(buffer, root: root)
    }

    /// Send to `peer` (blocking until the buffer may be reused).
    public func send(_ buffer: CollectiveBuffer, to peer: Int, tag: Int = 0) throws {
        try sendAsync(buffer, to: peer, tag: tag).wait()
    }

    /// Receive from `peer` (blocking).
    public func recv(_ buffer: CollectiveBuffer, from peer: Int, tag: Int = 0) throws {
        try recvAsync(buffer, from: peer, tag: tag).wait()
    }

    /// Simultaneous send and receive (blocking); see `sendRecvAsync`.
    public func sendRecv(send: CollectiveBuffer, to dst: Int, recv: CollectiveBuffer, from src: Int, tag: Int = 0) throws {
        try sendRecvAsync(send: send, to: dst, recv: recv, from: src, tag: tag).wait()
    }

    /// Barrier (blocking).
    public func barrier() throws {
        try barrierAsync().wait()
    }

    /// Dense unique storage of `tensor` as a buffer. The pointer stays valid while the
    /// tensor value (or the box holding it) is alive and not copied-on-write.
    static func denseBuffer(_ tensor: inout Tensor, rank: Int, op: String) throws -> CollectiveBuffer {
        switch tensor.dtype {
        case .float32: tensor.withMutableStoragePointer(Float.self) { _ in }
        case .float64: tensor.withMutableStoragePointer(Double.self) { _ in }
        case .int32: tensor.withMutableStoragePointer(Int32.self) { _ in }
        case .int64: tensor.withMutableStoragePointer(Int64.self) { _ in }
        default:
            throw CollectiveError.invalidArgument(rank: rank, op: op, message: "tensor dtype \(tensor.dtype) not supported; expected float32, float64, int32 or int64")
        }
        return CollectiveBuffer(tensor.count == 0 ? nil : tensor.storageBlock.pointer, count: tensor.count, dtype: tensor.dtype)
    }
}

/// Splits `total` elements into `parts` near-equal shard counts: the first
/// `total % parts` shards get one element more. Used for uneven reduce-scatter/all-gather.
public func shardCounts(total: Int, parts: Int) -> [Int] {
    precondition(parts > 0 && total >= 0, "shardCounts: total \(total) must be >= 0 and parts \(parts) > 0")
    let base = total / parts, extra = total % parts
    return (0..<parts).map { base + ($0 < extra ? 1 : 0) }
}

/// The start offset of each shard for `counts` (exclusive prefix sum).
public func shardOffsets(_ counts: [Int]) -> [Int] {
    var out = [Int](), acc = 0
    out.reserveCapacity(counts.count)
    for c in counts { out.append(acc); acc += c }
    return out
}
