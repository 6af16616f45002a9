import Dispatch
import Foundation

// How conv2d splits a batch into GEMM chunks and worker threads (see Conv.swift).
// MARK: - Plan

/// How the conv2d kernels split a batch: chunks of images per GEMM, and workers.
///
/// With one worker, `imagesPerChunk` images are unfolded side by side into one
/// `[K, nChunk·P]` matrix (K = (C/groups)·kh·kw, P = outH·outW) and each chunk and group
/// costs one GEMM, threaded by OpenBLAS: fewer, larger GEMMs than one per image, which
/// would leave OpenBLAS waking and parking its threads thousands of times per step.
/// With several workers, each runs a contiguous share of the batch on Loom's threads,
/// one image at a time; the plan only picks that for per-image GEMMs small enough for
/// OpenBLAS to run them on the calling thread (LeNet-sized layers), where one GEMM over
/// many images would be a thin, badly shaped product.
public struct Conv2dPlan: Sendable, Equatable {
    /// Images unfolded side by side into one GEMM (at least 1).
    public var imagesPerChunk: Int
    /// Workers, each with its own share of the batch and its own workspace (at least 1).
    public var threads: Int

    /// An explicit plan; the default is one image per GEMM on one worker.
    @inlinable
    public init(imagesPerChunk: Int = 1, threads: Int = 1) {
        precondition(imagesPerChunk >= 1 && threads >= 1,
                     "Conv2dPlan: imagesPerChunk \(imagesPerChunk) and threads \(threads) must be positive")
        self.imagesPerChunk = imagesPerChunk
        self.threads = threads
    }

    /// Default workspace budget of one chunked conv2d call, in bytes. Chunks of a few MiB
    /// keep the column matrix in cache between im2col and the GEMM; larger ones measured
    /// slower in training (`loom train-bench --model convnet-bn`).
    public static let defaultBudgetBytes = 4 << 20

    /// The workspace budget conv2d calls plan with (default `defaultBudgetBytes`). Lower
    /// it to trade speed for memory, like a cuDNN workspace limit: chunks then hold fewer
    /// images (never fewer than one). Set once at start-up, before kernels run (`loom
    /// train --workspace-limit`).
    nonisolated(unsafe) public static var budgetBytes = defaultBudgetBytes

    /// Split every batch over Loom's workers (each with a contiguous share of the images,
    /// its own chunks and workspace, and single-threaded GEMMs: OpenBLAS is held at one
    /// thread during the call) instead of threading each GEMM through OpenBLAS. On by
    /// default: convnet-bn trains ~1.2x faster on 2 cores (BENCHMARKS.md, issue 3);
    /// `loom train-bench --no-conv-batch-split` measures the other way.
    nonisolated(unsafe) public static var batchSplit = true

    /// Per-image GEMMs up to this many multiply-adds (m·n·k) go image-parallel on Loom's
    /// threads: OpenBLAS 0.3 runs a GEMM of at most 65536·4 multiply-adds single-threaded
    /// on its caller, so two workers then compute two GEMMs at once without contending
    /// for OpenBLAS's thread pool.
    public static let smallGemmWork = 1 << 18

    /// Chooses a plan for `batch` images: image-parallel workers when every per-image
    /// GEMM (forward, data and weight gradient alike: `(O/g)·K·P`) is small, else one
    /// worker with as many images per chunk as fit `budgetBytes` of workspace
    /// (`elementSize` bytes an element), balanced so that the chunks have nearly equal sizes.
    @inlinable
    public init(geometry: Conv2dGeometry, outChannels: Int, groups: Int, batch: Int, elementSize: Int,
                budgetBytes: Int = Conv2dPlan.budgetBytes, maxThreads: Int = KernelThreading.maxThreads) {
        self.init()
        if batch <= 1 { return }
        let g = max(groups, 1)
        let K = geometry.channels / g * geometry.kernelH * geometry.kernelW, P = geometry.colCols
        if maxThreads > 1 && (outChannels / g) * K * P <= Conv2dPlan.smallGemmWork {
            threads = min(maxThreads, batch)
            return
        }
        var share = batch
        let perImage = max(1, conv2dWorkspacePerImage(geometry: geometry, outChannels: outChannels, groups: groups) * elementSize)
        // Split only when every worker's scratch (at least one image) fits the budget: a
        // tight `--workspace-limit` keeps one worker rather than multiplying the minimum.
        if Conv2dPlan.batchSplit && maxThreads > 1 && budgetBytes / min(maxThreads, batch) >= perImage {
            threads = min(maxThreads, batch)
            share = (batch + threads - 1) / threads
        }
        let fit = budgetBytes / threads / perImage
        if fit <= 1 { return }
        let chunks = (share + fit - 1) / fit
        imagesPerChunk = (share + chunks - 1) / chunks
    }
}

/// Holds OpenBLAS at one thread while conv2d workers run their own GEMMs. Reference
/// counted under a lock, so overlapping calls from several threads (in-process data-parallel
/// ranks) restore the count only when the last one leaves. (A GEMM another thread runs
/// meanwhile outside conv2d also gets one thread: slower, not wrong.)
@usableFromInline
enum BlasPin {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var depth = 0
    nonisolated(unsafe) private static var saved = 1

    @usableFromInline
    static func withOneThread(_ body: () -> Void) {
        lock.lock()
        if depth == 0 {
            saved = BlasInfo.threads
            if saved > 1 { BlasInfo.setThreads(1) }
        }
        depth += 1
        lock.unlock()
        defer {
            lock.lock()
            depth -= 1
            if depth == 0 && saved > 1 { BlasInfo.setThreads(saved) }
            lock.unlock()
        }
        body()
    }
}

/// Workspace elements per image of a chunk: one group's column matrix `K·P` plus one
/// group's output (or output-gradient) block `(O/groups)·P`.
@inlinable
func conv2dWorkspacePerImage(geometry: Conv2dGeometry, outChannels: Int, groups: Int) -> Int {
    let cg = geometry.channels / max(groups, 1), og = outChannels / max(groups, 1)
    return (cg * geometry.kernelH * geometry.kernelW + og) * geometry.colCols
}

/// Workspace elements of one worker: for one image per chunk, one group's im2col matrix
/// `K·P` (0 for pointwise convolutions, which read the image in place); else
/// `imagesPerChunk·(K + O/groups)·P`.
@inlinable
func conv2dWorkerWorkspace(geometry: Conv2dGeometry, outChannels: Int, groups: Int, imagesPerChunk: Int) -> Int {
    if imagesPerChunk <= 1 {
        if geometry.isPointwise { return 0 }
        return (geometry.channels / max(groups, 1)) * geometry.kernelH * geometry.kernelW * geometry.colCols
    }
    return imagesPerChunk * conv2dWorkspacePerImage(geometry: geometry, outChannels: outChannels, groups: groups)
}

/// Elements of scratch space the conv2d kernels need under `plan`: `plan.threads`
/// workers' own scratch (see `Conv2dPlan`: `K·P` for one image per chunk, 0 if
/// pointwise; `imagesPerChunk·(K + O/groups)·P` otherwise), plus one weight-gradient
/// partial sum `O·K` for every worker after the first; at least one worker's scratch of
/// the direct kernels (forward, input and weight gradient) when `Conv2dDirect.policy`
/// chooses them for this layer.
@inlinable
public func conv2dWorkspaceCount(geometry: Conv2dGeometry, outChannels: Int, groups: Int, plan: Conv2dPlan = Conv2dPlan()) -> Int {
    let worker = conv2dWorkerWorkspace(geometry: geometry, outChannels: outChannels, groups: groups,
                                       imagesPerChunk: plan.imagesPerChunk)
    let K = geometry.channels / max(groups, 1) * geometry.kernelH * geometry.kernelW
    let gemm = plan.threads * worker + (plan.threads - 1) * outChannels * K
    // The direct kernel (when chosen) runs inside the same workspace: at least one worker's,
    // for the forward pass and for the input gradient.
    var count = gemm
    if conv2dDirectChosen(geometry, outChannels: outChannels, groups: groups) {
        count = max(count, Conv2dDirect.workerScratch(geometry, outChannels: outChannels),
                    Conv2dDirect.weightGradientScratch(geometry, outChannels: outChannels))
    }
    if let dg = conv2dDirectDataGradientGeometry(geometry, outChannels: outChannels, groups: groups) {
        count = max(count, conv2dDirectDataGradientScratch(geometry, dg, outChannels: outChannels))
    }
    return count
}

@inlinable
func conv2dCheck(_ geometry: Conv2dGeometry, outChannels: Int, groups: Int, plan: Conv2dPlan,
                 workspace: UnsafeMutableRawPointer?, _ name: String) {
    precondition(groups >= 1 && geometry.channels % groups == 0 && outChannels % groups == 0,
                 "\(name): channels \(geometry.channels) and outChannels \(outChannels) must be divisible by groups \(groups)")
    precondition(workspace != nil || conv2dWorkspaceCount(geometry: geometry, outChannels: outChannels, groups: groups, plan: plan) == 0,
                 "\(name): a workspace of conv2dWorkspaceCount elements is required")
}

/// Runs `body(worker, images)` for `workers` contiguous shares of `0..<batch`, on Loom's
/// threads when there are several.
@inlinable
func conv2dRunWorkers(batch: Int, workers: Int, _ body: (Int, Range<Int>) -> Void) {
    if workers <= 1 {
        body(0, 0..<batch)
        return
    }
    // Each worker's GEMMs run on its own thread: OpenBLAS's pool would only contend.
    // Measured (convnet-bn, 2 cores): leaving OpenBLAS's pool on makes the workers'
    // GEMMs contend for it and halves throughput.
    BlasPin.withOneThread {
        withoutActuallyEscaping(body) { escapable in
            let box = UnsafeSendableBox(escapable)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                box.value(w, (batch * w / workers)..<(batch * (w + 1) / workers))
            }
        }
    }
}

/// Runs `body(i)` for every image `i` in `0..<images`, over Loom's threads when
/// `parallel` and the images together hold enough elements (`elementsPerImage` each)
/// to pay for it.
@inlinable
func conv2dForEachImage(_ images: Int, elementsPerImage: Int, parallel: Bool, _ body: (Int) -> Void) {
    if !parallel {
        for i in 0..<images { body(i) }
        return
    }
    let grain = max(1, KernelThreading.minChunk / max(elementsPerImage, 1))
    parallelChunks(count: images, grain: grain) { range in
        for i in range { body(i) }
    }
}

/// Sizes shared by the conv2d kernels, per group.
@usableFromInline
struct Conv2dSizes {
    /// Geometry of one group's channels.
    @usableFromInline var group: Conv2dGeometry
    @usableFromInline var C: Int, cg: Int, O: Int, og: Int, K: Int, P: Int, HW: Int, groups: Int

    @inlinable
    init(_ geometry: Conv2dGeometry, outChannels: Int, groups: Int) {
        C = geometry.channels
        cg = C / groups
        O = outChannels
        og = O / groups
        self.groups = groups
        group = geometry
        group.channels = cg
        K = group.colRows
        P = group.colCols
        HW = geometry.height * geometry.width
    }
}
