import Foundation
import Collectives
import Layers
import TensorCore

/// Data-parallel training of a `Module` over a `ProcessGroup`: every rank runs the same
/// model on its own part of the batch, and gradients are averaged across ranks during
/// backward, so all replicas take the same optimizer step.
///
/// The design is PyTorch DDP's reducer (Li et al. 2020, "PyTorch Distributed: Experiences
/// on Accelerating Data Parallel Training", sec. 3–4):
/// - At construction, parameters (and buffers) are broadcast from rank 0, so replicas
///   start equal; parameter count and sizes are checked to agree on every rank.
/// - Parameters are grouped into buckets by `BucketAssignment` (reverse registration
///   order, 25 MiB cap, small first bucket); each bucket owns one flat buffer of the
///   parameters' dtype (charged to `MemoryTag.gradients`). Fusing small gradients into one
///   allreduce is GradientFlow's lazy allreduce (Sun et al. 2019).
/// - A post-accumulate-grad hook on each parameter copies its final gradient into its
///   bucket slot and marks it ready. With `overlap`, a bucket whose slots are all ready
///   is all-reduced at once (asynchronously, on the group's communication thread) while
///   backward continues. Buckets are always *launched in bucket order* (a full bucket
///   waits for the earlier ones), so every rank issues the same collectives in the same
///   order even if gradients become ready in a different order.
/// - `finishGradientSync()` (after backward, before the optimizer step) handles unused
///   parameters, launches what is left, waits for every bucket and writes the averaged
///   gradients back into each parameter's `.grad`.
/// - `noSync { }` runs micro-steps whose gradients only accumulate locally; the next
///   synced backward's hooks see the accumulated `.grad` and all-reduce that.
///
/// A step:
/// ```swift
/// let ddp = try DistributedDataParallel(model, group: group)
/// let loss = Loss.crossEntropy(logits: ddp(xLocal), targets: yLocal)   // mean over B/N
/// loss.backward()
/// try ddp.finishGradientSync()        // .grad = mean over ranks = gradient of the mean over B
/// optimizer.step(&values); model.zeroGrad()
/// ```
///
/// ## Reduction order and determinism
/// Each rank's local gradient is whatever its backward computes (`.grad` after
/// accumulation). The averaged gradient of element `e` is `op(sum) / N` where the sum's
/// association is the allreduce algorithm's (see `AllReduceAlgorithm`): in-process native
/// `((g0 + g1) + g2) + ...` in rank order; ring: starting from the rank that owns the
/// ring segment holding `e` *within its bucket buffer*. The division by `N` follows the
/// sum (`ReduceOp.average`). For a fixed world size, algorithm, model and bucket caps,
/// every input to that computation is fixed, so results are bitwise reproducible from run
/// to run and identical on every rank (the algorithms leave identical bits everywhere).
/// Against one process with the full batch `B` the result differs only by rounding:
/// one process sums the batch inside one GEMM/reduction, DDP sums `B/N`-sized partial
/// means and then averages them (see `DataParallelTests` for the measured bounds).
///
/// ## Threading
/// Hooks run on the thread that calls `backward`; construction, `noSync` and
/// `finishGradientSync` must be called from that same thread (one training thread per
/// rank). `@unchecked Sendable`: the hook-visible state is guarded by `lock`; the bucket
/// buffers are written only under `lock` before their allreduce is launched and read
/// only after it has completed.
public final class DistributedDataParallel: @unchecked Sendable {
    /// The wrapped model (its parameters are the replicas being kept in sync).
    public let module: Module
    /// The group of replicas.
    public let group: any ProcessGroup
    /// The options this reducer was made with.
    public let options: DDPOptions
    /// The bucket plan (parameter indices are positions in `parameterNames`).
    public let assignment: BucketAssignment
    /// Dotted names of the synchronised parameters, in registration order.
    public let parameterNames: [String]
    /// The element type of every parameter (and of the bucket buffers).
    public let dtype: DType

    let parameters: [Parameter]
    let location: [(bucket: Int, slot: Int)]
    /// One flat buffer per bucket; unique storage, addressed through `storageBlock.pointer`.
    let bucketBuffers: [Tensor]
    /// Per-bucket sparse compressors (their residuals persist across steps), or empty.
    let compressors: [ChunkTopKCompressor]

    private let lock = NSLock()
    private var ready: [Bool]
    private var pendingInBucket: [Int]
    private var nextToLaunch = 0
    private var works: [CollectiveWork?]
    private var hookErrors: [String] = []
    private var syncDisabled = false
    private var hookHandles: [HookHandle] = []
    private var stepCounter = 0

    private var waitSeconds = 0.0

    /// The number of completed `finishGradientSync` calls (the step named in errors).
    public var stepCount: Int { lock.lock(); defer { lock.unlock() }; return stepCounter }

    /// Total wall time spent inside `finishGradientSync` (launching what is left and
    /// waiting for communication): the part of gradient sync that backward did not hide.
    /// With overlap this shrinks; benchmarks compare it with `overlap` on and off.
    public var syncSeconds: Double { lock.lock(); defer { lock.unlock() }; return waitSeconds }

    /// Wraps `module`: checks that all ranks have the same parameter layout, broadcasts
    /// parameters (and buffers) from rank 0, builds the buckets and registers the hooks.
    ///
    /// Collective: every rank of `group` must construct its DDP at the same point.
    /// Throws when parameters mix dtypes, are not float32/float64, compression is asked
    /// for non-float32 parameters, the layout differs between ranks, or a collective fails.
    public init(_ module: Module, group: any ProcessGroup, options: DDPOptions = DDPOptions()) throws(DataParallelError) {
        self.module = module
        self.group = group
        self.options = options
        let rank = group.rank
        // Parameters, deduplicated (a module shared in two places lists its parameters twice).
        let (names, params) = uniqueParameters(module)
        self.parameterNames = names
        self.parameters = params
        let dtype = params.first?.value.dtype ?? .float32
        for (n, p) in zip(names, params) where p.value.dtype != dtype {
            throw DataParallelError("rank \(rank): DDP: parameter '\(n)' has dtype \(p.value.dtype); expected \(dtype) like '\(names[0])' (all parameters must share one dtype)")
        }
        guard dtype == .float32 || dtype == .float64 else {
            throw DataParallelError("rank \(rank): DDP: parameters have dtype \(dtype); expected float32 or float64")
        }
        if options.collective.compression != .none && dtype != .float32 {
            throw DataParallelError("rank \(rank): DDP: compression \(options.collective.compression.rawValue) needs float32 parameters, found \(dtype)")
        }
        if let sp = options.sparse {
            guard dtype == .float32, sp.chunkSize >= 1, sp.fraction > 0, sp.fraction <= 1 else {
                throw DataParallelError("rank \(rank): DDP: sparse gradients need float32 parameters (found \(dtype)), chunkSize >= 1 (found \(sp.chunkSize)) and fraction in (0, 1] (found \(sp.fraction))")
            }
        }
        self.dtype = dtype
        let bytes = params.map { $0.value.count * dtype.byteSize }
        let plan = try BucketAssignment(parameterBytes: bytes, capBytes: options.bucketCapBytes,
                                        firstBucketCapBytes: options.firstBucketCapBytes)
        self.assignment = plan
        self.location = plan.location
        self.bucketBuffers = Memory.withTag(.gradients) {
            plan.buckets.map { Tensor.zeros([$0.byteCount / dtype.byteSize], dtype: dtype) }
        }
        compressors = options.sparse.map { sp in
            plan.buckets.map { b in
                let count = b.byteCount / dtype.byteSize
                return ChunkTopKCompressor(count: count, chunkSize: sp.chunkSize, topChunks: sp.topChunks(count: count))
            }
        } ?? []
        ready = Array(repeating: false, count: params.count)
        pendingInBucket = plan.buckets.map(\.parameters.count)
        works = Array(repeating: nil, count: plan.buckets.count)

        try checkLayoutAgrees(bytes)
        try broadcastModuleState(module, names: names, parameters: params, buffers: options.broadcastBuffers, group: group, who: "DDP")

        for i in params.indices {
            let handle = params[i].value.registerPostAccumulateGradHook { [weak self] g in self?.markReady(i, grad: g) }
            hookHandles.append(handle)
        }
    }

    deinit { removeHooks() }

    /// Unregisters the gradient hooks (the model can then be used without DDP).
    public func removeHooks() {
        lock.lock()
        let handles = hookHandles
        hookHandles = []
        lock.unlock()
        for (p, h) in zip(parameters, handles) { p.value.removeHook(h) }
    }

    /// Runs the wrapped module.
    public func callAsFunction(_ input: Tensor) -> Tensor { module(input) }

    /// Runs `body` (forward and backward of micro-steps) without synchronising gradients:
    /// they accumulate in each parameter's `.grad` locally (PyTorch's `no_sync`). The
    /// next synced backward all-reduces the accumulated sums.
    public func noSync<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        let previous = syncDisabled
        syncDisabled = true
        lock.unlock()
        defer { lock.lock(); syncDisabled = previous; lock.unlock() }
        return try body()
    }

    // MARK: - Hooks

    /// The post-accumulate hook of parameter `i`: copies its final gradient into the
    /// bucket slot, marks it ready, and (with overlap) launches full buckets in order.
    func markReady(_ i: Int, grad: Tensor) {
        lock.lock()
        defer { lock.unlock() }
        if syncDisabled { return }
        if ready[i] {
            hookErrors.append("parameter '\(parameterNames[i])' received a gradient twice before finishGradientSync (run finishGradientSync after every synced backward, or wrap accumulation micro-steps in noSync)")
            return
        }
        copyIntoSlot(i, grad)
        ready[i] = true
        pendingInBucket[location[i].bucket] -= 1
        if options.overlap && options.sparse == nil { launchReadyBuckets() }
    }

    /// Copies `grad` (any layout) into parameter `i`'s slot. Caller holds `lock`.
    private func copyIntoSlot(_ i: Int, _ grad: Tensor) {
        let (b, k) = location[i]
        let bytes = parameters[i].value.count * dtype.byteSize
        if bytes == 0 { return }
        let g = grad.dtype == dtype ? grad : grad.to(dtype)
        let dense = g.isContiguous ? g : g.contiguous()
        let dst = bucketBuffers[b].storageBlock.pointer + assignment.buckets[b].offsets[k]
        dst.copyMemory(from: dense.storageBlock.pointer + dense.offset * dtype.byteSize, byteCount: bytes)
    }

    /// Zero-fills parameter `i`'s slot. Caller holds `lock`.
    private func zeroSlot(_ i: Int) {
        let (b, k) = location[i]
        let bytes = parameters[i].value.count * dtype.byteSize
        if bytes > 0 { (bucketBuffers[b].storageBlock.pointer + assignment.buckets[b].offsets[k]).initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
    }

    /// Launches, in bucket order, every bucket whose slots are all ready. Caller holds `lock`.
    private func launchReadyBuckets() {
        while nextToLaunch < works.count && pendingInBucket[nextToLaunch] == 0 {
            let b = nextToLaunch
            let t = bucketBuffers[b]
            let buffer = CollectiveBuffer(t.storageBlock.pointer, count: t.count, dtype: dtype)
            works[b] = group.allReduceAsync(buffer, op: .average, options: options.collective)
            nextToLaunch += 1
        }
    }

    // MARK: - Finishing a step

    /// Completes gradient synchronisation after a synced backward: handles parameters
    /// that got no gradient, launches the remaining buckets, waits for all of them and
    /// sets every parameter's `.grad` to the average over ranks.
    ///
    /// Throws (naming rank, step and parameters) when a parameter got no gradient and
    /// `findUnusedParameters` is off, when a hook saw a misuse, or when a collective fails.
    /// After such an error the step's gradients are unusable; the reducer is reset so the
    /// next step starts clean (a collective failure poisons the group itself).
    public func finishGradientSync() throws(DataParallelError) {
        lock.lock()
        defer { lock.unlock() }
        let started = DispatchTime.now().uptimeNanoseconds
        defer { waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        let rank = group.rank, step = stepCounter
        group.step = step
        defer { reset() }
        if !hookErrors.isEmpty {
            drainLaunched()
            throw DataParallelError("rank \(rank), step \(step): DDP: " + hookErrors.joined(separator: "; "))
        }
        let unused = ready.indices.filter { !ready[$0] }
        var usedLocally = ready
        if !unused.isEmpty {
            guard options.findUnusedParameters else {
                drainLaunched()
                let list = unused.map { "'\(parameterNames[$0])'" }.joined(separator: ", ")
                throw DataParallelError("rank \(rank), step \(step): DDP: \(unused.count) of \(parameters.count) parameters received no gradient in this backward: \(list); expected every parameter to take part in the loss (pass findUnusedParameters: true to allow this)")
            }
            for i in unused {
                // A gradient accumulated under noSync still counts; otherwise contribute zeros.
                if let g = parameters[i].value.grad { copyIntoSlot(i, g); usedLocally[i] = true } else { zeroSlot(i) }
                ready[i] = true
                pendingInBucket[location[i].bucket] -= 1
            }
        }
        if options.sparse != nil {
            try sparseExchange(rank: rank, step: step)
        }
        launchReadyBuckets()
        precondition(nextToLaunch == works.count, "DDP: internal error: \(works.count - nextToLaunch) buckets not launched")
        // Usage bitmap (findUnusedParameters): issued after the buckets, the same on every rank.
        var flags: UnsafeMutableBufferPointer<Int32>? = nil
        var flagsWork: CollectiveWork? = nil
        if options.findUnusedParameters && !parameters.isEmpty {
            let f = UnsafeMutableBufferPointer<Int32>.allocate(capacity: parameters.count)
            for i in parameters.indices { f[i] = usedLocally[i] ? 1 : 0 }
            flags = f
            flagsWork = group.allReduceAsync(CollectiveBuffer(f), op: .sum, options: .native)
        }
        defer { flags?.deallocate() }
        var failure: String? = nil
        for (b, w) in works.enumerated() {
            do { try w?.wait() } catch {
                if failure == nil { failure = "allreduce of bucket \(b) (\(assignment.buckets[b].byteCount) bytes) failed: \(error)" }
            }
        }
        do { try flagsWork?.wait() } catch {
            if failure == nil { failure = "allreduce of the parameter-usage bitmap failed: \(error)" }
        }
        if let failure { throw DataParallelError("rank \(rank), step \(step): DDP: \(failure)") }
        Memory.withTag(.gradients) {
            for i in parameters.indices {
                if let flags, flags[i] == 0 { continue }  // unused on every rank: .grad stays as it is
                parameters[i].value.grad = sliceOut(i)
            }
        }
        stepCounter += 1
    }

    /// Sparse mode: every bucket, in order, through `sparseAllReduce` (average); marks
    /// them launched. Caller holds `lock`.
    private func sparseExchange(rank: Int, step: Int) throws(DataParallelError) {
        for b in bucketBuffers.indices {
            let t = bucketBuffers[b]
            let buffer = UnsafeMutableBufferPointer(start: t.storageBlock.pointer.assumingMemoryBound(to: Float.self), count: t.count)
            do { try group.sparseAllReduce(buffer, compressor: compressors[b], average: true,
                                            options: options.collective.algorithm == .native ? .native : .ring) } catch {
                throw DataParallelError("rank \(rank), step \(step): DDP: sparse allreduce of bucket \(b) failed: \(error)")
            }
        }
        nextToLaunch = works.count
    }

    /// The averaged gradient of parameter `i`, copied out of its bucket slot.
    private func sliceOut(_ i: Int) -> Tensor {
        let (b, k) = location[i]
        let p = parameters[i].value
        let t = Tensor.zeros(p.shape, dtype: dtype)
        let bytes = p.count * dtype.byteSize
        if bytes > 0 {
            t.storageBlock.pointer.copyMemory(from: bucketBuffers[b].storageBlock.pointer + assignment.buckets[b].offsets[k], byteCount: bytes)
        }
        return t
    }

    /// Waits for the buckets already launched (errors ignored). Caller holds `lock`.
    private func drainLaunched() {
        for w in works { _ = try? w?.wait() }
    }

    /// Clears the per-step state. Caller holds `lock`.
    private func reset() {
        for i in ready.indices { ready[i] = false }
        pendingInBucket = assignment.buckets.map(\.parameters.count)
        nextToLaunch = 0
        for b in works.indices { works[b] = nil }
        hookErrors = []
    }

    // MARK: - Construction collectives

    /// Checks with one allreduce that every rank has the same parameter count and sizes.
    private func checkLayoutAgrees(_ bytes: [Int]) throws(DataParallelError) {
        // A cheap signature: count, total bytes and a position-weighted checksum of sizes;
        // max and min over ranks agree only if every rank has the same values.
        var checksum: Int64 = 0
        for (i, b) in bytes.enumerated() { checksum = checksum &* 1_000_003 &+ Int64(b) &+ Int64(i) }
        let mine: [Int64] = [Int64(bytes.count), Int64(bytes.reduce(0, +)), checksum]
        var maxv = mine, minv = mine.map { -$0 }
        do {
            try maxv.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .max) }
            try minv.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .max) }
        } catch {
            throw DataParallelError("rank \(group.rank): DDP: checking the parameter layout across ranks failed: \(error)")
        }
        if maxv != mine || minv.map({ -$0 }) != mine {
            throw DataParallelError("rank \(group.rank): DDP: this rank has \(bytes.count) parameters (\(bytes.reduce(0, +)) bytes); ranks range over \(-minv[0])...\(maxv[0]) parameters and \(-minv[1])...\(maxv[1]) bytes; expected the same model on every rank")
        }
    }
}
