import Foundation
import Collectives
import Layers
import Optimizers
import TensorCore

/// What a `ShardedOptimizer` partitions across ranks (ZeRO's stages).
public enum ShardingStage: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// Stage 1 (ZeRO P_os): optimizer state for 1/N of the weights per rank; full
    /// gradients are reduce-scattered after backward.
    case optimizerState = 1
    /// Stage 2 (ZeRO P_os+g): additionally, each gradient is reduce-scattered (in buckets)
    /// as soon as it is ready and its full copy freed, so a rank keeps gradients only for
    /// its shard.
    case gradients = 2

    public var description: String { "stage \(rawValue)" }
}

/// A data-parallel optimizer that shards the weight update across ranks: gradients are
/// reduce-scattered (averaged), each rank applies the optimizer to its 1/N of the
/// flattened weights, keeping optimizer state only for that shard, and the updated
/// weights are all-gathered back into every replica.
///
/// Xu et al. 2020 ("Automatic Cross-Replica Sharding of Weight Update in Data-Parallel
/// Training") and ZeRO (Rajbhandari et al. 2020): allreduce = reduce-scatter + all-gather,
/// and the update between them only needs the local shard, so optimizer state (and with
/// stage 2 the gradients) per replica falls to 1/N. It replaces `DistributedDataParallel`
/// for the model it wraps (it broadcasts rank 0's parameters and buffers at construction).
///
/// The transformation is applied to one flat 1-D tensor per rank (its shard), so it must
/// be *elementwise*: SGD (momentum, Nesterov, weight decay), Adam, AdamW and LR schedules
/// are; clipping by a global norm is not (it would need an allreduce of the norm). With
/// an elementwise rule, sharded and unsharded updates are the same arithmetic on the
/// same numbers: the in-process native reduce-scatter sums in rank order like the
/// native allreduce, so stages 1 and 2 reproduce DDP + `Optimizer` bit for bit.
///
/// Memory per rank (float32, Ψ parameters, K optimizer slots per parameter; measured by
/// `DataParallelTests` with `Memory.stats()` by tag):
/// - stage 1: parameters 4Ψ, gradients 4Ψ (`.grad`) + 4Ψ/N (the reduced shard), optimizer state 4KΨ/N;
/// - stage 2: parameters 4Ψ, gradients 4Ψ/N (plus one bucket in flight), optimizer state 4KΨ/N.
/// (Stage 3, parameters gathered on demand, is `FullyShardedDataParallel`.) Checkpoints hold the whole
/// optimizer state (`fullStateDict`, gathered), so they resume at any world size or unsharded.
///
/// A step: `loss.backward(); try sharded.step(); model.zeroGrad()`.
///
/// Threading as `DistributedDataParallel`: one training thread per rank. `@unchecked
/// Sendable`: hook-visible state is guarded by `lock`; scratch buffers are written only
/// under `lock` before their collective is launched and released after it completed.
public final class ShardedOptimizer: @unchecked Sendable {
    /// The wrapped model.
    public let module: Module
    /// The replicas.
    public let group: any ProcessGroup
    /// Which state is sharded.
    public let stage: ShardingStage
    /// The partition of the flattened parameters.
    public let shardMap: ShardMap
    /// Parameter names, registration order (the flat layout's order).
    public let parameterNames: [String]
    /// Gradient buckets (stage 2): each bucket is a contiguous range of the flat vector.
    public let buckets: BucketAssignment
    /// The collective options of the reduce-scatter and all-gather.
    public let collective: CollectiveOptions
    /// The optimizer over this rank's shard (one flat parameter).
    public private(set) var optimizer: Optimizer

    let parameters: [Parameter]
    let dtype: DType
    /// This rank's averaged gradient shard (`shardMap.counts[rank]` elements), tag `.gradients`.
    let shardGrad: Tensor
    /// Flat range of each bucket.
    let bucketRanges: [Range<Int>]
    let bucketOf: [Int]

    private let lock = NSLock()
    private var ready: [Bool]
    private var pendingInBucket: [Int]
    private var nextToLaunch = 0
    private var scratch: [Tensor?]
    private var works: [CollectiveWork?]
    private var hookErrors: [String] = []
    private var hookHandles: [HookHandle] = []
    private var stepCounter = 0
    /// The gradients of this step are already reduced into `shardGrad` (by `unscaleGradients`).
    private var reduced = false

    /// The number of completed steps (named in errors).
    public var stepCount: Int { lock.lock(); defer { lock.unlock() }; return stepCounter }

    /// Wraps `module`: broadcasts rank 0's parameters and buffers, builds the shard map
    /// and (stage 2) the gradient buckets and hooks, and the optimizer for this rank's shard.
    ///
    /// Collective. Throws when parameters are not all float32 (or all float64), or a
    /// collective fails.
    public init(_ module: Module, group: any ProcessGroup, transformation: any GradientTransformation,
                stage: ShardingStage, bucketCapBytes: Int = BucketAssignment.defaultCapBytes,
                collective: CollectiveOptions = .native) throws(DataParallelError) {
        self.module = module
        self.group = group
        self.stage = stage
        self.collective = collective
        let rank = group.rank
        let (names, params) = uniqueParameters(module)
        parameterNames = names
        parameters = params
        let dtype = params.first?.value.dtype ?? .float32
        for (n, p) in zip(names, params) where p.value.dtype != dtype || !(dtype == .float32 || dtype == .float64) {
            throw DataParallelError("rank \(rank): ShardedOptimizer: parameter '\(n)' has dtype \(p.value.dtype); expected float32 or float64, the same for all (first: \(dtype))")
        }
        self.dtype = dtype
        let counts = params.map(\.value.count)
        let map = try ShardMap(parameterCounts: counts, size: group.size)
        shardMap = map
        let plan = try BucketAssignment(parameterBytes: counts.map { $0 * dtype.byteSize }, capBytes: bucketCapBytes,
                                        firstBucketCapBytes: bucketCapBytes)
        buckets = plan
        bucketRanges = plan.buckets.map { b in
            let lo = b.parameters.min()!, hi = b.parameters.max()!
            return map.parameterOffsets[lo]..<(map.parameterOffsets[hi] + counts[hi])
        }
        bucketOf = plan.location.map(\.bucket)
        let myCount = map.counts[rank]
        shardGrad = Memory.withTag(.gradients) { Tensor.zeros([myCount], dtype: dtype) }
        optimizer = Optimizer(transformation, params: [Tensor.zeros([myCount], dtype: dtype)])
        ready = Array(repeating: false, count: params.count)
        pendingInBucket = plan.buckets.map(\.parameters.count)
        scratch = Array(repeating: nil, count: plan.buckets.count)
        works = Array(repeating: nil, count: plan.buckets.count)

        try broadcastModuleState(module, names: names, parameters: params, buffers: true, group: group, who: "ShardedOptimizer")
        if stage == .gradients {
            for i in params.indices {
                hookHandles.append(params[i].value.registerPostAccumulateGradHook { [weak self] g in self?.gradientReady(i, g) })
            }
        }
    }

    deinit { removeHooks() }

    /// Unregisters the gradient hooks (stage 2).
    public func removeHooks() {
        lock.lock()
        let handles = hookHandles
        hookHandles = []
        lock.unlock()
        for (p, h) in zip(parameters, handles) { p.value.removeHook(h) }
    }

    // MARK: - Stage 2 hooks

    /// Stage 2: copies parameter `i`'s final gradient into its bucket's scratch (flat
    /// order), frees `.grad`, and launches full buckets' reduce-scatters in bucket order.
    func gradientReady(_ i: Int, _ grad: Tensor) {
        lock.lock()
        defer { lock.unlock() }
        if ready[i] {
            hookErrors.append("parameter '\(parameterNames[i])' received a gradient twice before step()")
            return
        }
        copyGradient(i, grad)
        parameters[i].value.grad = nil
        ready[i] = true
        pendingInBucket[bucketOf[i]] -= 1
        launchReadyBuckets()
    }

    /// Copies a gradient into the scratch of its bucket. Caller holds `lock`.
    private func copyGradient(_ i: Int, _ grad: Tensor?) {
        let b = bucketOf[i]
        if scratch[b] == nil {
            scratch[b] = Memory.withTag(.gradients) { Tensor.zeros([bucketRanges[b].count], dtype: dtype) }
        }
        let bytes = parameters[i].value.count * dtype.byteSize
        guard bytes > 0 else { return }
        let dst = scratch[b]!.storageBlock.pointer + (shardMap.parameterOffsets[i] - bucketRanges[b].lowerBound) * dtype.byteSize
        if let grad {
            let g = grad.dtype == dtype ? grad : grad.to(dtype)
            let dense = g.isContiguous ? g : g.contiguous()
            dst.copyMemory(from: dense.storageBlock.pointer + dense.offset * dtype.byteSize, byteCount: bytes)
        } else {
            dst.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        }
    }

    /// Launches, in order, the reduce-scatter of every full bucket. Caller holds `lock`.
    private func launchReadyBuckets() {
        let rank = group.rank
        let mine = shardMap.ranges[rank]
        while nextToLaunch < works.count && pendingInBucket[nextToLaunch] == 0 {
            let b = nextToLaunch
            let range = bucketRanges[b]
            let counts = shardMap.counts(within: range)
            let s = scratch[b]!
            let recvStart = max(range.lowerBound, mine.lowerBound) - mine.lowerBound
            let recv = CollectiveBuffer(shardGrad.count == 0 ? nil : shardGrad.storageBlock.pointer, count: shardGrad.count, dtype: dtype)
                .slice(counts[rank] == 0 ? 0..<0 : recvStart..<(recvStart + counts[rank]))
            works[b] = group.reduceScatterAsync(send: CollectiveBuffer(s.storageBlock.pointer, count: s.count, dtype: dtype),
                                                recv: recv, counts: counts, op: .average, options: collective)
            nextToLaunch += 1
        }
    }

    // MARK: - The step

    /// Synchronises gradients (reduce-scatter, average), updates this rank's shard with
    /// the optimizer, and all-gathers the updated weights into every parameter (in place).
    ///
    /// Throws, naming rank, step and parameters, when a parameter got no gradient, a hook
    /// saw a misuse, or a collective fails.
    public func step() throws(DataParallelError) {
        lock.lock()
        defer { lock.unlock() }
        let rank = group.rank, step = stepCounter
        group.step = step
        defer { resetLocked() }
        try reduceLocked(rank: rank, step: step)
        try updateAndGather(rank: rank, step: step)
        stepCounter += 1
    }

    /// Divides this rank's averaged gradient shard by `scale` and returns whether every
    /// rank's shard is finite (fp16 dynamic loss scaling; see `unscaleShardAndAgree`):
    /// first completes the gradient reduction `step()` would do (stage 1: the
    /// reduce-scatter; stage 2: waits for the buckets), so `step()` then only updates.
    /// Collective. Call after backward, before `step()` or `skipStep()`.
    public func unscaleGradients(by scale: Double) throws(DataParallelError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let rank = group.rank, step = stepCounter
        group.step = step
        do {
            try reduceLocked(rank: rank, step: step)
        } catch {
            resetLocked()
            throw error
        }
        do {
            return try unscaleShardAndAgree(shardGrad, scale: scale, group: group)
        } catch {
            throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: allreduce of the non-finite gradient flag failed: \(error)")
        }
    }

    /// Ends a step without updating (the loss scaler found an inf or NaN on some rank):
    /// in-flight reductions are waited for and the per-step state cleared; the step count
    /// does not advance. Throws when a hook recorded a misuse.
    public func skipStep() throws(DataParallelError) {
        lock.lock()
        defer { lock.unlock() }
        defer { resetLocked() }
        for w in works { _ = try? w?.wait() }
        if !hookErrors.isEmpty {
            throw DataParallelError("rank \(group.rank), step \(stepCounter): ShardedOptimizer: " + hookErrors.joined(separator: "; "))
        }
    }

    /// Reduces (averages) this step's gradients into `shardGrad` unless already done.
    /// Caller holds `lock`.
    private func reduceLocked(rank: Int, step: Int) throws(DataParallelError) {
        guard !reduced else { return }
        switch stage {
        case .optimizerState:
            try reduceScatterFullGradients(rank: rank, step: step)
        case .gradients:
            let unused = ready.indices.filter { !ready[$0] }
            if !hookErrors.isEmpty || !unused.isEmpty {
                for w in works { _ = try? w?.wait() }
                var problems = hookErrors
                if !unused.isEmpty {
                    problems.append("\(unused.count) of \(parameters.count) parameters received no gradient in this backward: "
                                    + unused.map { "'\(parameterNames[$0])'" }.joined(separator: ", ")
                                    + "; expected every parameter to take part in the loss")
                }
                throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: " + problems.joined(separator: "; "))
            }
            for (b, w) in works.enumerated() {
                do { try w?.wait() } catch {
                    throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: reduce-scatter of bucket \(b) failed: \(error)")
                }
            }
        }
        for b in scratch.indices { scratch[b] = nil }
        reduced = true
    }

    /// Stage 1: flattens every `.grad` and reduce-scatters it into `shardGrad`. Caller holds `lock`.
    private func reduceScatterFullGradients(rank: Int, step: Int) throws(DataParallelError) {
        let missing = parameters.indices.filter { parameters[$0].value.grad == nil }
        if !missing.isEmpty {
            throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: \(missing.count) of \(parameters.count) parameters received no gradient in this backward: "
                                    + missing.map { "'\(parameterNames[$0])'" }.joined(separator: ", ")
                                    + "; expected every parameter to take part in the loss")
        }
        let flat = Memory.withTag(.workspace) { Tensor.zeros([shardMap.total], dtype: dtype) }
        let w = dtype.byteSize
        for (i, p) in parameters.enumerated() where p.value.count > 0 {
            let g0 = p.value.grad!
            let g = g0.isContiguous ? g0 : g0.contiguous()
            (flat.storageBlock.pointer + shardMap.parameterOffsets[i] * w)
                .copyMemory(from: g.storageBlock.pointer + g.offset * w, byteCount: p.value.count * w)
        }
        do {
            try group.reduceScatter(send: CollectiveBuffer(flat.count == 0 ? nil : flat.storageBlock.pointer, count: flat.count, dtype: dtype),
                                    recv: CollectiveBuffer(shardGrad.count == 0 ? nil : shardGrad.storageBlock.pointer, count: shardGrad.count, dtype: dtype),
                                    counts: shardMap.counts, op: .average, options: collective)
        } catch {
            throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: reduce-scatter of the gradients failed: \(error)")
        }
    }

    /// Applies the optimizer to this rank's shard and all-gathers the weights. Caller holds `lock`.
    private func updateAndGather(rank: Int, step: Int) throws(DataParallelError) {
        let w = dtype.byteSize
        let mine = shardMap.ranges[rank]
        let pieces = shardMap.pieces(of: rank)
        // This rank's weights as one flat leaf, with the averaged shard gradient.
        var shard = Memory.withTag(.workspace) { Tensor.zeros([mine.count], dtype: dtype) }
        for piece in pieces where !piece.elements.isEmpty {
            let src = parameters[piece.parameter].value
            src.withStoragePointerRaw { base in
                (shard.storageBlock.pointer + piece.shardOffset * w)
                    .copyMemory(from: base + (src.offset + piece.elements.lowerBound) * w, byteCount: piece.elements.count * w)
            }
        }
        shard.requiresGrad = true
        shard.grad = shardGrad.detached()
        var list = [shard]
        shard = Tensor.zeros([0])
        optimizer.step(&list)
        let updated = list[0]
        // All-gather every rank's updated shard.
        let full = Memory.withTag(.workspace) { Tensor.zeros([shardMap.total], dtype: dtype) }
        do {
            try group.allGather(send: CollectiveBuffer(updated.count == 0 ? nil : updated.storageBlock.pointer + updated.offset * w, count: updated.count, dtype: dtype),
                                recv: CollectiveBuffer(full.count == 0 ? nil : full.storageBlock.pointer, count: full.count, dtype: dtype),
                                counts: shardMap.counts, options: collective)
        } catch {
            throw DataParallelError("rank \(rank), step \(step): ShardedOptimizer: all-gather of the weights failed: \(error)")
        }
        // Write back in place (the leaf and its hooks stay).
        for (i, p) in parameters.enumerated() where p.value.count > 0 {
            let off = shardMap.parameterOffsets[i]
            let bytes = p.value.count * w
            if dtype == .float32 {
                p.value.withMutableStoragePointer(Float.self) { UnsafeMutableRawPointer($0).copyMemory(from: full.storageBlock.pointer + off * w, byteCount: bytes) }
            } else {
                p.value.withMutableStoragePointer(Double.self) { UnsafeMutableRawPointer($0).copyMemory(from: full.storageBlock.pointer + off * w, byteCount: bytes) }
            }
        }
    }

    // MARK: - Checkpoints

    /// The optimizer state of the whole model in the format of an unsharded `Optimizer`
    /// over the same parameters (keys `"<parameter>.<slot>"` with the parameters' shapes,
    /// and `"step"`): every slot's shards are all-gathered and cut back into parameters.
    /// So a sharded run's checkpoint resumes sharded at any world size, or unsharded.
    ///
    /// Collective: every rank calls it at the same point; every rank gets the whole
    /// dictionary (for a moment each holds the full state, 4KΨ bytes).
    public func fullStateDict() throws(DataParallelError) -> [String: Tensor] {
        lock.lock(); defer { lock.unlock() }
        let rank = group.rank, w = dtype.byteSize
        let local = optimizer.stateDict()
        var out: [String: Tensor] = [:]
        out[OptimizerState.stepKey] = local[OptimizerState.stepKey]
        let slotNames = FullOptimizerState.slotNames(local)
        for slot in slotNames {
            let mine = local["0.\(slot)"]!.contiguous()
            let full = Memory.withTag(.workspace) { Tensor.zeros([shardMap.total], dtype: dtype) }
            do {
                try group.allGather(send: CollectiveBuffer(mine.count == 0 ? nil : mine.storageBlock.pointer + mine.offset * w, count: mine.count, dtype: dtype),
                                    recv: CollectiveBuffer(full.count == 0 ? nil : full.storageBlock.pointer, count: full.count, dtype: dtype),
                                    counts: shardMap.counts, options: collective)
            } catch {
                throw DataParallelError("rank \(rank): ShardedOptimizer: all-gather of optimizer slot '\(slot)' for a checkpoint failed: \(error)")
            }
            for (i, p) in parameters.enumerated() {
                let off = shardMap.parameterOffsets[i], n = p.value.count
                out[OptimizerState.key(param: i, slot: slot)] = full.narrowed(dim: 0, start: off, length: n).contiguous().reshaped(p.value.shape)
            }
        }
        return out
    }

    /// Restores this rank's shard from a whole-model optimizer state (as written by
    /// `fullStateDict()` or by an unsharded `Optimizer` over the same parameters, e.g. a
    /// DDP run's checkpoint). Not collective: each rank cuts out its own pieces.
    ///
    /// Throws, changing nothing, when a key is missing or unexpected, or a shape or dtype
    /// differs (the error names the key and parameter, the expected and the found value).
    public func loadFullStateDict(_ dictionary: [String: Tensor]) throws(DataParallelError) {
        lock.lock(); defer { lock.unlock() }
        let rank = group.rank
        let sources = shardMap.pieces(of: rank).map {
            FullOptimizerState.ShardSource(parameter: $0.parameter, elements: $0.elements, shardOffset: $0.shardOffset)
        }
        let shardDict = try FullOptimizerState.shardStateDict(dictionary, current: optimizer.stateDict(), shardCount: shardMap.counts[rank],
                                                              sources: sources, names: parameterNames, shapes: parameters.map(\.value.shape),
                                                              dtype: dtype, who: "rank \(rank): ShardedOptimizer")
        do { try optimizer.loadStateDict(shardDict) } catch {
            throw DataParallelError("rank \(rank): ShardedOptimizer: \(error)")
        }
        stepCounter = optimizer.stepCount
    }

    /// Clears per-step state. Caller holds `lock`.
    private func resetLocked() {
        for i in ready.indices { ready[i] = false }
        pendingInBucket = buckets.buckets.map(\.parameters.count)
        nextToLaunch = 0
        for b in works.indices { works[b] = nil; scratch[b] = nil }
        hookErrors = []
        reduced = false
    }
}

extension Tensor {
    /// The storage base as a raw pointer (element 0 of storage; add `offset`).
    func withStoragePointerRaw<R>(_ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawPointer(storageBlock.pointer))
    }
}

/// Parameters of `module`, deduplicated by identity, with their dotted names.
func uniqueParameters(_ module: Module) -> ([String], [Parameter]) {
    var seen: Set<ObjectIdentifier> = []
    var names: [String] = [], params: [Parameter] = []
    for (name, p) in module.namedParameters() where seen.insert(ObjectIdentifier(p)).inserted {
        names.append(name)
        params.append(p)
    }
    return (names, params)
}

/// Broadcasts parameters (and buffers) from rank 0 in place, naming the tensor on failure.
func broadcastModuleState(_ module: Module, names: [String], parameters: [Parameter], buffers: Bool,
                          group: any ProcessGroup, who: String) throws(DataParallelError) {
    let rank = group.rank
    for (n, p) in zip(names, parameters) {
        do { try Memory.withTag(.parameters) { try group.broadcast(&p.value, root: 0) } } catch {
            throw DataParallelError("rank \(rank): \(who): broadcasting parameter '\(n)' from rank 0 failed: \(error)")
        }
    }
    guard buffers else { return }
    for (n, b) in module.namedBuffers() {
        do { try group.broadcast(&b.value, root: 0) } catch {
            throw DataParallelError("rank \(rank): \(who): broadcasting buffer '\(n)' from rank 0 failed: \(error)")
        }
    }
}
