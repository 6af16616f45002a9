/// Lazy (fused) allreduce: buffers are registered as they become ready and reduced
/// together at `flush()`, packed into flat buckets of at most `bucketBytes`, one
/// allreduce per bucket (Horovod's tensor fusion, PyTorch DDP's buckets).
///
/// Many small allreduces each pay the latency of a collective (µs under MPI, more with a
/// communication-thread hop); one fused allreduce pays it once and runs at bandwidth.
/// All ranks must add the same sequence of buffers (counts and dtypes). Float32 only.
/// Not thread-safe: one owner thread per rank.
public final class LazyAllReduce {
    /// The group the buckets are reduced over.
    public let group: any ProcessGroup
    /// Bucket capacity in bytes (a single larger buffer gets a bucket of its own).
    public let bucketBytes: Int
    /// The reduction.
    public let op: ReduceOp
    /// Algorithm and compression of every bucket's allreduce.
    public let options: CollectiveOptions
    /// Issue every bucket before waiting (packing overlaps communication on the group's
    /// communication thread) instead of reducing each bucket as soon as it is packed.
    public var overlap: Bool
    private var pending: [UnsafeMutableBufferPointer<Float>] = []
    /// Flat bucket buffers, kept across flushes (fresh 4 MiB allocations page-fault on
    /// every step, which cost as much as the allreduce itself).
    private var flats: [UnsafeMutableBufferPointer<Float>] = []

    deinit { flats.forEach { $0.deallocate() } }

    /// Creates an empty fuser.
    public init(group: any ProcessGroup, bucketBytes: Int = 16 << 20, op: ReduceOp = .sum, options: CollectiveOptions = .native,
                overlap: Bool = false) {
        self.overlap = overlap
        self.group = group
        self.bucketBytes = bucketBytes
        self.op = op
        self.options = options
    }

    /// Registers a buffer to be reduced in place at the next `flush()`; the memory must
    /// stay valid until then.
    public func add(_ buffer: UnsafeMutableBufferPointer<Float>) {
        pending.append(buffer)
    }

    /// Packs the registered buffers into buckets, allreduces each bucket, and unpacks the
    /// results. O(total elements) copies. With `overlap`, all buckets are issued before
    /// the first wait, so packing bucket k+1 overlaps reducing bucket k — a gain only with
    /// spare cores (measured slower on 2 cores with 2 ranks).
    public func flush() throws {
        defer { pending.removeAll() }
        var buckets: [[UnsafeMutableBufferPointer<Float>]] = []
        var current: [UnsafeMutableBufferPointer<Float>] = [], bytes = 0
        for b in pending {
            if !current.isEmpty && bytes + b.count * 4 > bucketBytes {
                buckets.append(current); current = []; bytes = 0
            }
            current.append(b); bytes += b.count * 4
        }
        if !current.isEmpty { buckets.append(current) }
        var works: [CollectiveWork] = []
        for (k, bucket) in buckets.enumerated() {
            let total = bucket.reduce(0) { $0 + $1.count }
            if k == flats.count { flats.append(.allocate(capacity: max(total, 1))) }
            if flats[k].count < total {
                flats[k].deallocate()
                flats[k] = .allocate(capacity: total)
            }
            let flat = UnsafeMutableBufferPointer(rebasing: flats[k][0..<total])
            var at = 0
            for b in bucket where b.count > 0 {
                (flat.baseAddress! + at).update(from: b.baseAddress!, count: b.count)
                at += b.count
            }
            works.append(group.allReduceAsync(CollectiveBuffer(flat), op: op, options: options))
            // Waiting at once lets this thread run the op itself (no hand-off to the
            // communication thread, which on a 2-core machine competes with packing).
            if !overlap { try works[k].wait() }
        }
        for (k, bucket) in buckets.enumerated() {
            try works[k].wait()
            var at = 0
            for b in bucket where b.count > 0 {
                b.baseAddress!.update(from: flats[k].baseAddress! + at, count: b.count)
                at += b.count
            }
        }
    }
}
