import Foundation
import Collectives
import Layers
import Optimizers
import TensorCore

/// Fully sharded data parallelism (ZeRO stage 3, Rajbhandari et al. 2020, "ZeRO: Memory
/// Optimizations Toward Training Trillion Parameter Models", sec. 5.3; PyTorch FSDP, Zhao
/// et al. 2023): each rank keeps only its 1/N shard of the parameters, of the averaged
/// gradients and of the optimizer state; full parameters exist only around the unit that
/// needs them.
///
/// ## Units, gathering and freeing
/// The model is cut into units (`FSDPUnitPlan`, default: every layer with parameters,
/// through nested Sequentials). Each unit's parameters are flattened (registration order)
/// and split over the ranks by a `ShardMap` of their own; this rank's pieces of every unit,
/// concatenated, form one flat tensor (`.parameters`, about 4Ψ/N bytes for float32).
/// - **Forward**: a forward pre-hook on each unit module re-materialises the unit's
///   parameter storages (`TensorStorage.rematerialize()`, the same storage objects,
///   fresh bytes) and fills them by an all-gather; the unit runs; its forward hook
///   releases the bytes again (`releaseBytes`) and registers a tensor hook on the unit's
///   output. The model itself is thus sharded: `fsdp(x)` and `fsdp.module(x)` both
///   gather on demand (the wrapper's call also throws a failed gather at once; a direct
///   call reports it from `step()`).
/// - **Backward**: that hook runs when the output's gradient is final, just before the
///   VJP of the op that produced it, and gathers the unit again into the *same* storages,
///   so the weights captured by the unit's VJPs (e.g. `Tensor.linear` keeps a view of the
///   weight) read the gathered values. Post-accumulate hooks on the parameters count the
///   unit's final gradients (including ones `Tensor.linear` fuses straight into `.grad`);
///   when the unit is complete its gradients are reduce-scattered (averaged) into this
///   rank's gradient shard, `.grad` is cleared and the parameters are released.
/// - **Step** (`step()`): the optimizer updates the rank's flat parameter shard with its
///   flat gradient shard; nothing is all-gathered (the next forward gathers on demand).
///
/// Between steps, reading a parameter's values outside a forward (`parameter.value`, the
/// model's `stateDict()`) traps with a message naming the parameter, its unit and the
/// rank: use `withFullParameters { }` or `fullParameterStateDict()` (collective) instead.
///
/// ## Same result as DDP + an unsharded optimizer
/// The gathered values are the shard values bit for bit; forward and backward run the same
/// ops as the unwrapped model; the in-process native reduce-scatter sums each element in
/// rank order and divides by N, as the native allreduce does; and the optimizer rule must
/// be elementwise (SGD, momentum, weight decay, Adam, AdamW, schedules: not global-norm
/// clipping), so the update of each element is the same arithmetic on the same numbers.
/// Hence the weights equal DDP + `Optimizer` bitwise (tested on 1, 2 and 3 ranks). Under
/// MPI the reduction order is MPI's, as for DDP. Gradient accumulation (several backwards
/// before one `step()`) adds each backward's *averaged* shard, i.e. Σ_b avg_r g, where DDP's
/// `noSync` computes avg_r Σ_b g: equal up to rounding.
///
/// ## Memory per rank (float32, Ψ parameters, K optimizer slots, N ranks)
/// parameters 4Ψ/N + the full parameters of the unit being computed; gradients 4Ψ/N + one
/// unit's full gradients; optimizer state 4KΨ/N (+ the update's temporaries during `step`).
/// One unit at a time holds because a unit is released before the next one is gathered:
/// in forward after it ran, in backward in its last parameter's post-accumulate hook, which
/// the engine runs before it reaches the previous unit's output (leaves first). A model
/// whose unit gets its last gradient later (a skip connection around units) can hold two.
/// With `prefetch` (the default) the next unit's all-gather is issued before the current
/// unit computes (forward: unit i+1 while unit i runs; backward: unit i-1 while unit i
/// runs), so communication overlaps compute; at most one unit is prefetched, so the
/// bound grows by at most one unit (two units' full parameters at a time).
/// `peakGatheredBytes` reports this rank's maximum. (Each unit's shard is rounded
/// up to whole elements, so a rank holds at most one element more per unit.) Construction
/// holds the full model once (it is built unsharded, then broadcast from rank 0 and cut),
/// and buffers (BatchNorm statistics) are replicated, not sharded.
///
/// ## Use
/// ```swift
/// let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try adam(lr: 1e-3))
/// let loss = Loss.crossEntropy(logits: try fsdp(xLocal), targets: yLocal)
/// loss.backward()
/// try fsdp.step()
/// ```
///
/// ## Threading
/// One training thread per rank: construction, forward, backward (the hooks run on the
/// thread calling `backward`), `step()` and the checkpoint calls must all run on it, and
/// every rank must issue them in the same order (they are collectives). `@unchecked
/// Sendable` only because hooks must be `@Sendable` closures: all state is confined to
/// that thread.
public final class FullyShardedDataParallel: @unchecked Sendable {
    /// The wrapped model; its parameters' bytes are released except around their unit.
    public let module: Module
    /// The replicas.
    public let group: any ProcessGroup
    /// The units.
    public let plan: FSDPUnitPlan
    /// Dotted parameter names (the order of parameter indices).
    public let parameterNames: [String]
    /// The element type of every parameter.
    public let dtype: DType
    /// Options of the all-gathers and reduce-scatters.
    public let collective: CollectiveOptions
    /// Whether the next unit's all-gather is issued while the current unit computes
    /// (forward: unit i+1 during unit i; backward: unit i-1 during unit i).
    public let prefetch: Bool
    /// The optimizer over this rank's flat shard (one parameter).
    public internal(set) var optimizer: Optimizer

    let parameters: [Parameter]
    /// Each unit's flat parameters split over the ranks (`parameterCounts` in unit order).
    let unitMaps: [ShardMap]
    /// Where unit `u`'s piece starts in this rank's flat shard.
    let unitBase: [Int]
    /// Unit of each parameter.
    let unitOf: [Int]
    /// The unit modules (their forward hooks gather and release).
    let unitModules: [Module]
    /// What the trap says when a released parameter is read.
    let releaseNotes: [String]

    /// This rank's parameter shard (all units, concatenated), tag `.parameters`; a leaf.
    var localShard: Tensor
    /// This rank's averaged gradient shard, tag `.gradients`.
    let shardGrad: Tensor

    var gathered: [Bool]
    /// The all-gathers of each unit still in flight (empty once waited).
    var inFlight: [[(Int, CollectiveWork)]]
    /// The unit gathered ahead of its use (at most one), if any.
    var prefetched: Int?
    var ready: [Bool]
    var pending: [Int]
    var reducedThisStep: [Int]
    var hookErrors: [String] = []
    var hookHandles: [HookHandle] = []
    var forwardHookHandles: [(Module, ForwardHookHandle)] = []
    /// Set inside `withFullParameters`: the forward hooks neither gather nor release.
    var suspendForwardHooks = false
    var stepCounter = 0
    var gatheredBytes = 0
    /// The largest number of bytes of full (gathered) parameters held at once on this rank.
    public internal(set) var peakGatheredBytes = 0

    /// The number of completed steps (named in errors).
    public var stepCount: Int { stepCounter }
    /// Elements of the flat parameter shard this rank holds.
    public var localShardCount: Int { localShard.count }

    /// Wraps `model`: broadcasts rank 0's parameters and buffers, builds the units and
    /// their shard maps, keeps this rank's shard, releases every parameter's full bytes
    /// and registers the gradient hooks; the optimizer state covers the shard only.
    ///
    /// Collective. Throws (naming rank and parameter) when the parameters are not all
    /// float32 or all float64, a parameter is not a dense tensor with storage of its own,
    /// the rule is not elementwise, the unit plan is invalid, or a collective fails.
    public init(_ model: Module, group: any ProcessGroup, transformation: any GradientTransformation,
                units policy: FSDPUnitPolicy = .perLayer, collective: CollectiveOptions = .native,
                prefetch: Bool = true) throws(DataParallelError) {
        let rank = group.rank, size = group.size
        self.module = model
        self.group = group
        self.collective = collective
        self.prefetch = prefetch
        guard transformation.isElementwise else {
            throw DataParallelError("rank \(rank): FSDP: the optimizer updates each rank's 1/\(size) shard of the parameters, so the rule must be elementwise (SGD, momentum, weight decay, Adam, AdamW); global-norm clipping needs the norm over all shards and is not supported")
        }
        let (names, params) = uniqueParameters(model)
        parameterNames = names
        parameters = params
        let dtype = params.first?.value.dtype ?? .float32
        for (n, p) in zip(names, params) where p.value.dtype != dtype || !(dtype == .float32 || dtype == .float64) {
            throw DataParallelError("rank \(rank): FSDP: parameter '\(n)' has dtype \(p.value.dtype); expected float32 or float64, the same for all parameters (first: '\(names[0])' \(dtype))")
        }
        self.dtype = dtype
        var storages: [ObjectIdentifier: String] = [:]
        for (n, p) in zip(names, params) {
            guard p.value.isContiguous else {
                throw DataParallelError("rank \(rank): FSDP: parameter '\(n)' is not contiguous; expected a dense parameter")
            }
            if let other = storages.updateValue(n, forKey: ObjectIdentifier(p.value.storageBlock)) {
                throw DataParallelError("rank \(rank): FSDP: parameters '\(other)' and '\(n)' share one storage; FSDP releases each parameter's storage, so each needs its own")
            }
        }
        let plan = try FSDPUnitPlan(model, policy: policy)
        self.plan = plan
        var unitOf = Array(repeating: 0, count: params.count)
        var maps: [ShardMap] = [], bases: [Int] = []
        var at = 0
        for (u, unit) in plan.units.enumerated() {
            for i in unit.parameters { unitOf[i] = u }
            let map = try ShardMap(parameterCounts: unit.parameters.map { params[$0].value.count }, size: size)
            maps.append(map)
            bases.append(at)
            at += map.counts[rank]
        }
        self.unitOf = unitOf
        unitMaps = maps
        unitBase = bases
        releaseNotes = names.indices.map { i in
            "parameter '\(names[i])' of FSDP unit '\(plan.units[unitOf[i]].name.isEmpty ? "(model)" : plan.units[unitOf[i]].name)' on rank \(rank): fully sharded, its full values exist only during its unit's forward and backward inside FullyShardedDataParallel; to read them use withFullParameters { } or fullParameterStateDict() (collective)"
        }
        unitModules = try FSDPUnitPlan.unitModules(model, policy: policy).get().map(\.1)

        try broadcastModuleState(model, names: names, parameters: params, buffers: true, group: group, who: "FSDP")
        // This rank's shard, cut from the (now equal) full parameters.
        var shard = Memory.withTag(.parameters) { Tensor.zeros([at], dtype: dtype) }
        let w = dtype.byteSize
        for (u, unit) in plan.units.enumerated() {
            for piece in maps[u].pieces(of: rank) where !piece.elements.isEmpty {
                let p = params[unit.parameters[piece.parameter]].value
                (shard.storageBlock.pointer + (bases[u] + piece.shardOffset) * w)
                    .copyMemory(from: p.storageBlock.pointer + (p.offset + piece.elements.lowerBound) * w, byteCount: piece.elements.count * w)
            }
        }
        shard.requiresGrad = true
        localShard = shard
        shardGrad = Memory.withTag(.gradients) { Tensor.zeros([at], dtype: dtype) }
        optimizer = Optimizer(transformation, params: [Tensor.zeros([at], dtype: dtype)])
        gathered = Array(repeating: true, count: plan.units.count)
        inFlight = Array(repeating: [], count: plan.units.count)
        ready = Array(repeating: false, count: params.count)
        pending = plan.units.map(\.parameters.count)
        reducedThisStep = Array(repeating: 0, count: plan.units.count)
        for u in plan.units.indices { release(u) }
        gatheredBytes = 0
        for i in params.indices {
            hookHandles.append(params[i].value.registerPostAccumulateGradHook { [weak self] _ in self?.gradientReady(i) })
        }
        for (u, m) in unitModules.enumerated() {
            forwardHookHandles.append((m, m.registerForwardPreHook { [weak self] _, _ in self?.beforeForward(u); return nil }))
            forwardHookHandles.append((m, m.registerForwardHook { [weak self] _, _, y in self?.afterForward(u, output: y); return nil }))
        }
    }

    deinit { removeHooks() }

    /// Unregisters the gradient and forward hooks.
    public func removeHooks() {
        for (p, h) in zip(parameters, hookHandles) { p.value.removeHook(h) }
        hookHandles = []
        for (m, h) in forwardHookHandles { m.removeForwardHook(h) }
        forwardHookHandles = []
    }

    // MARK: - Forward

    /// Runs the model (`module(input)`): each unit's parameters are gathered just before
    /// it runs and released right after (its forward hooks); with grad mode on, the
    /// unit's backward gather is armed.
    ///
    /// Collective (one all-gather per parameter of each unit). Throws naming rank, step
    /// and unit when a gather fails (then every unit is released again).
    public func callAsFunction(_ input: Tensor) throws(DataParallelError) -> Tensor {
        group.step = stepCounter
        let known = hookErrors.count
        let y = module(input)
        if hookErrors.count > known {
            for u in plan.units.indices { release(u) }
            throw DataParallelError(hookErrors[known])
        }
        return y
    }

    /// The forward pre-hook of unit `u`.
    func beforeForward(_ u: Int) {
        guard !suspendForwardHooks else { return }
        do { try gather(u, phase: "forward") } catch { hookErrors.append(error.description) }
        // The next unit's gather runs on the communication thread while this one computes.
        prefetchGather(u + 1)
    }

    /// The forward hook of unit `u`: arm the backward gather, free the parameters.
    func afterForward(_ u: Int, output y: Tensor) {
        guard !suspendForwardHooks else { return }
        if GradMode.isEnabled && y.requiresGrad {
            y.registerHook { [weak self] _ in self?.beforeBackward(u); return nil }
        }
        release(u)
    }

    /// Takes part in one training step's collectives without data (a rank whose share
    /// of the batch is empty): the forward gathers, then for each unit in reverse order
    /// the backward gather and the reduce-scatter of zero gradients, as the other ranks'
    /// backward issues them. Equivalent to a backward of a zero loss.
    public func participateWithoutData() {
        group.step = stepCounter
        for u in plan.units.indices { beforeForward(u); release(u) }
        for u in plan.units.indices.reversed() {
            beforeBackward(u)
            for i in plan.units[u].parameters {
                let (shape, dtype) = (parameters[i].value.shape, parameters[i].value.dtype)
                parameters[i].value.grad = Memory.withTag(.gradients) { Tensor.zeros(shape, dtype: dtype) }
                gradientReady(i)
            }
        }
    }

    // MARK: - Gather and release

    /// Makes unit `u`'s full parameters available: issues its all-gathers unless they
    /// are in flight already (a prefetch) or done, and waits for them.
    func gather(_ u: Int, phase: String) throws(DataParallelError) {
        if !gathered[u] { startGather(u) }
        if prefetched == u { prefetched = nil }
        try finishGather(u, phase: phase)
    }

    /// Starts gathering unit `u` ahead of its use (at most one unit prefetched: an unused
    /// earlier prefetch is released first). No-op when prefetching is off, `u` is out of
    /// range or already gathered. A failure is reported when the unit is used or released.
    func prefetchGather(_ u: Int) {
        guard prefetch, plan.units.indices.contains(u), !gathered[u] else { return }
        if let old = prefetched { release(old) }
        startGather(u)
        prefetched = u
    }

    /// Re-materialises unit `u`'s parameter storages and issues the all-gathers of their
    /// values (one per parameter, async); `finishGather` waits for them.
    func startGather(_ u: Int) {
        let rank = group.rank, w = dtype.byteSize
        let map = unitMaps[u], mine = map.ranges[rank]
        let shardBase = localShard.storageBlock.pointer + (localShard.offset + unitBase[u]) * w
        var works: [(Int, CollectiveWork)] = []
        for (k, i) in plan.units[u].parameters.enumerated() {
            let p = parameters[i].value
            let storage = p.storageBlock
            storage.rematerialize()
            gatheredBytes += storage.byteCount
            let n = map.parameterCounts[k]
            guard n > 0 else { continue }
            let range = map.parameterOffsets[k]..<(map.parameterOffsets[k] + n)
            let counts = map.counts(within: range)
            let lo = max(range.lowerBound, mine.lowerBound)
            let send = CollectiveBuffer(counts[rank] == 0 ? nil : shardBase + (lo - mine.lowerBound) * w, count: counts[rank], dtype: dtype)
            let recv = CollectiveBuffer(storage.pointer + p.offset * w, count: n, dtype: dtype)
            works.append((i, group.allGatherAsync(send: send, recv: recv, counts: counts, options: collective)))
        }
        gathered[u] = true
        inFlight[u] = works
        peakGatheredBytes = max(peakGatheredBytes, gatheredBytes)
    }

    /// Waits for unit `u`'s all-gathers; on failure zeroes the unit (defined values if
    /// backward goes on; `step()` throws) and throws naming the parameter and `phase`.
    func finishGather(_ u: Int, phase: String) throws(DataParallelError) {
        let works = inFlight[u]
        guard !works.isEmpty else { return }
        inFlight[u] = []
        var failure: DataParallelError?
        for (i, work) in works {
            do { try work.wait() } catch {
                if failure == nil {
                    failure = DataParallelError("rank \(group.rank), step \(stepCounter): FSDP: all-gather of parameter '\(parameterNames[i])' (unit '\(plan.units[u].name)') before its \(phase) failed: \(error)")
                }
            }
        }
        if let failure {
            for i in plan.units[u].parameters {
                let s = parameters[i].value.storageBlock
                s.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: s.byteCount)
            }
            throw failure
        }
    }

    /// Frees unit `u`'s full parameter bytes (the storages stay, as handles); a gather
    /// still in flight (an unused prefetch) is waited for first.
    func release(_ u: Int) {
        guard gathered[u] else { return }
        if prefetched == u { prefetched = nil }
        do { try finishGather(u, phase: "prefetch") } catch { hookErrors.append(error.description) }
        for i in plan.units[u].parameters {
            let storage = parameters[i].value.storageBlock
            gatheredBytes -= storage.byteCount
            storage.releaseBytes(note: releaseNotes[i])
        }
        gathered[u] = false
    }

    // MARK: - The step

    /// Updates this rank's parameter shard with its averaged gradient shard (the
    /// optimizer's elementwise rule on one flat tensor). Not collective: the next forward
    /// gathers the updated values.
    ///
    /// Throws, naming rank, step and parameters, when a parameter received no gradient
    /// since the last step (FSDP reduces a unit when all its parameters have one), a hook
    /// recorded a failed collective or misuse; the step is then not applied and the
    /// gradients of the step are dropped.
    public func step() throws(DataParallelError) {
        let rank = group.rank, step = stepCounter
        group.step = step
        defer { resetStep() }
        var problems = hookErrors
        let missing = parameters.indices.filter { i in
            let u = unitOf[i]
            return !ready[i] && (reducedThisStep[u] == 0 || pending[u] < plan.units[u].parameters.count)
        }
        if !missing.isEmpty {
            problems.append("\(missing.count) of \(parameters.count) parameters received no gradient in this backward: "
                            + missing.map { "'\(parameterNames[$0])'" }.joined(separator: ", ")
                            + "; expected every parameter to take part in the loss")
        }
        if !problems.isEmpty {
            throw DataParallelError("rank \(rank), step \(step): FSDP: " + problems.joined(separator: "; "))
        }
        localShard.grad = shardGrad.detached()
        var list = [localShard]
        localShard = Tensor.zeros([0])
        optimizer.step(&list)
        localShard = list[0]
        localShard.grad = nil
        stepCounter += 1
    }

    // MARK: - Dynamic loss scaling

    /// Divides this rank's averaged gradient shard by `scale` in place (each element
    /// multiplied by `1 / scale`, rounded to the dtype, as `LossScaler.unscale` does to a
    /// full gradient) and returns whether the gradients of *every* rank's shard are
    /// finite: each rank checks its own shard, then one allreduce (max) of a non-finite
    /// flag makes the decision the same everywhere, so all ranks skip a step together.
    /// With the in-process native reduction the shard is bitwise the slice of DDP's
    /// averaged gradient, so the result and the decision equal DDP + `LossScaler`.
    ///
    /// Collective (one allreduce of one element). Call it after backward, before `step()`
    /// or `skipStep()`. Throws naming rank and step when the allreduce fails.
    public func unscaleGradients(by scale: Double) throws(DataParallelError) -> Bool {
        group.step = stepCounter
        do {
            return try unscaleShardAndAgree(shardGrad, scale: scale, group: group)
        } catch {
            throw DataParallelError("rank \(group.rank), step \(stepCounter): FSDP: allreduce of the non-finite gradient flag failed: \(error)")
        }
    }

    /// Ends a step without updating (the loss scaler found an inf or NaN on some rank):
    /// the gradient shard is dropped and the per-step state cleared, as `step()` does;
    /// the step count does not advance (the optimizer did not step). Throws like `step()`
    /// when a hook recorded a failed collective.
    public func skipStep() throws(DataParallelError) {
        defer { resetStep() }
        if !hookErrors.isEmpty {
            throw DataParallelError("rank \(group.rank), step \(stepCounter): FSDP: " + hookErrors.joined(separator: "; "))
        }
    }

    /// Clears per-step state: releases gathered units, drops `.grad`, resets counters.
    func resetStep() {
        for u in plan.units.indices { release(u) }
        for p in parameters { p.value.grad = nil }
        for i in ready.indices { ready[i] = false }
        pending = plan.units.map(\.parameters.count)
        for u in reducedThisStep.indices { reducedThisStep[u] = 0 }
        hookErrors = []
    }
}
