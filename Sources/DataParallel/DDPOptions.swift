import Collectives

/// Options of `DistributedDataParallel`, as a plain value.
public struct DDPOptions: Sendable, Equatable {
    /// Cap of every gradient bucket but the first, in bytes (PyTorch: 25 MiB).
    public var bucketCapBytes: Int
    /// Cap of the first bucket (the last parameters), in bytes (PyTorch: 1 MiB).
    public var firstBucketCapBytes: Int
    /// Launch a bucket's allreduce from the gradient hook as soon as it is full (true), or
    /// all buckets after backward in `finishGradientSync` (false). Overlap needs a core for
    /// the communication thread: MPI's shared-memory transport moves data only while some
    /// thread of each rank polls it, so with every core busy computing the overlapped
    /// allreduce crawls and steals compute time (see `overlapHelps`).
    public var overlap: Bool

    /// Whether overlapping the allreduce with backward can pay on a host running
    /// `localRanks` ranks of `computeThreadsPerRank` compute threads each on `cores` cores:
    /// each rank's communication thread needs a core of its own,
    /// `cores >= localRanks x (computeThreadsPerRank + 1)`. Measured on 2 cores with 2 ranks
    /// of one thread (BENCHMARKS.md, session 13, medians of six runs): convnet-bn's scaling
    /// efficiency is 0.84 with overlap and 0.92 without (PyTorch DDP over gloo's TCP, whose
    /// kernel moves the data without polling: 0.86). `loom train --data-parallel` uses this unless
    /// `--overlap` or `--no-overlap` is given.
    public static func overlapHelps(localRanks: Int, cores: Int, computeThreadsPerRank: Int) -> Bool {
        cores >= localRanks * (max(computeThreadsPerRank, 1) + 1)
    }
    /// Treat parameters that got no gradient in a synced backward as ready with a zero
    /// (or their locally accumulated) gradient, instead of throwing. Costs one extra
    /// small allreduce per step (a usage bitmap) so that parameters unused on every rank
    /// keep `.grad == nil`, as in PyTorch.
    public var findUnusedParameters: Bool
    /// Broadcast buffers (BatchNorm running statistics) from rank 0 at construction.
    public var broadcastBuffers: Bool
    /// Algorithm and wire compression of the gradient allreduce. Compression
    /// (`.float16`, `.bfloat16`) needs `algorithm: .ring` and float32 parameters; it is
    /// GradientFlow's mixed-precision communication (Sun et al. 2019, sec. 4.2).
    ///
    /// Deviation with compression: the ring sends partial sums rounded to the wire format
    /// (fp16: 11 significant bits, relative error ≤ 2⁻¹¹ ≈ 4.9e-4 per hop, values above
    /// 65504 overflow to ±inf; bf16: 8 bits, ≈ 3.9e-3 per hop) and accumulates in float32,
    /// so each averaged gradient element carries a relative error of about
    /// `(N − 1) · 2⁻¹¹` for fp16. Measured by `DataParallelTests`: on the test MLP after
    /// 3 SGD steps (lr 0.1) the weights differ from the single-process run by 1.4e-5
    /// (N = 2) and 1.6e-5 (N = 3) with fp16, 1.0e-4 and 1.3e-4 with bf16, against 3e-8
    /// uncompressed; the test bounds them by 5e-4 (fp16) and 4e-3 (bf16).
    public var collective: CollectiveOptions
    /// Coarse-grained sparse communication (GradientFlow, Sun et al. 2019, sec. 4.3):
    /// each bucket sends only its largest chunks, the rest stays in a per-bucket residual
    /// added to the next step's gradient (error feedback, Collectives'
    /// `ChunkTopKCompressor` / `sparseAllReduce`). Float32 only. nil: dense allreduce.
    /// The sparse exchange is blocking, so it runs in `finishGradientSync` (no overlap).
    public var sparse: SparseGradientOptions?

    /// Creates options; the defaults are PyTorch DDP's (25 MiB / 1 MiB buckets, overlap on).
    public init(bucketCapBytes: Int = BucketAssignment.defaultCapBytes,
                firstBucketCapBytes: Int = BucketAssignment.defaultFirstBucketCapBytes,
                overlap: Bool = true, findUnusedParameters: Bool = false, broadcastBuffers: Bool = true,
                collective: CollectiveOptions = .native, sparse: SparseGradientOptions? = nil) {
        self.sparse = sparse
        self.bucketCapBytes = bucketCapBytes
        self.firstBucketCapBytes = firstBucketCapBytes
        self.overlap = overlap
        self.findUnusedParameters = findUnusedParameters
        self.broadcastBuffers = broadcastBuffers
        self.collective = collective
    }
}

/// Chunked top-k sparsification of DDP buckets: `chunkSize` elements per chunk, and per
/// bucket the `ceil(fraction * chunks)` chunks of largest L2 norm are sent (at least one).
public struct SparseGradientOptions: Sendable, Equatable {
    /// Elements per chunk.
    public var chunkSize: Int
    /// Fraction of each bucket's chunks sent per step, in (0, 1].
    public var fraction: Double

    /// Creates sparse options; `fraction` 1 sends everything (then the result equals the
    /// dense allreduce in rank order).
    public init(chunkSize: Int = 256, fraction: Double = 0.1) {
        self.chunkSize = chunkSize
        self.fraction = fraction
    }

    /// The number of chunks sent for a bucket of `count` elements.
    public func topChunks(count: Int) -> Int {
        let chunks = (count + chunkSize - 1) / chunkSize
        return min(chunks, max(1, Int((fraction * Double(chunks)).rounded(.up))))
    }
}
