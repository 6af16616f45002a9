import Collectives
import Layers
import Optimizers
import TensorCore

/// Checkpoints of a fully sharded model: everything is saved in the unsharded formats
/// (the model's `stateDict()` names and shapes; an unsharded `Optimizer`'s state dict over
/// `parameterNames`), so a checkpoint resumes at any world size, under DDP, or in one
/// process, and the reverse.
extension FullyShardedDataParallel {
    // MARK: - Parameters

    /// The model's state dict with full parameters (keys and order of `Module.stateDict()`:
    /// parameters, then buffers), gathered from the shards into fresh tensors; the model's
    /// own parameters stay released.
    ///
    /// Collective: every rank calls it at the same point and gets the whole dictionary
    /// (for a moment each holds the full parameters, 4Ψ bytes).
    public func fullParameterStateDict() throws(DataParallelError) -> [(String, Tensor)] {
        let rank = group.rank, w = dtype.byteSize
        var full: [Tensor?] = Array(repeating: nil, count: parameters.count)
        for (u, unit) in plan.units.enumerated() {
            let map = unitMaps[u], mine = map.ranges[rank]
            for (k, i) in unit.parameters.enumerated() {
                let shape = parameters[i].value.shape
                let t = Tensor.zeros(shape, dtype: dtype)
                let n = map.parameterCounts[k]
                if n > 0 {
                    let range = map.parameterOffsets[k]..<(map.parameterOffsets[k] + n)
                    let counts = map.counts(within: range)
                    let lo = max(range.lowerBound, mine.lowerBound)
                    let base = localShard.storageBlock.pointer + (localShard.offset + unitBase[u] + lo - mine.lowerBound) * w
                    do {
                        try group.allGather(send: CollectiveBuffer(counts[rank] == 0 ? nil : base, count: counts[rank], dtype: dtype),
                                            recv: CollectiveBuffer(t.storageBlock.pointer, count: n, dtype: dtype),
                                            counts: counts, options: collective)
                    } catch {
                        throw DataParallelError("rank \(rank): FSDP: all-gather of parameter '\(parameterNames[i])' for a state dict failed: \(error)")
                    }
                }
                full[i] = t
            }
        }
        var index: [ObjectIdentifier: Int] = [:]
        for (i, p) in parameters.enumerated() { index[ObjectIdentifier(p)] = i }
        return module.namedParameters().map { ($0.0, full[index[ObjectIdentifier($0.1)]!]!) }
            + module.namedBuffers().map { ($0.0, $0.1.value) }
    }

    /// Loads a model state dict with full parameters (as `fullParameterStateDict()` or an
    /// unsharded model's `stateDict()` writes it): each rank keeps its own pieces; buffers
    /// are replaced. Not collective. Dtypes are converted; keys and shapes must match
    /// exactly. Throws, changing nothing, naming the key and the expected and found value.
    public func loadFullParameterStateDict(_ dictionary: [String: Tensor]) throws(DataParallelError) {
        let rank = group.rank, w = dtype.byteSize
        let named = module.namedParameters(), buffers = module.namedBuffers()
        var expected: [String: [Int]] = [:]
        for (k, p) in named { expected[k] = p.value.shape }
        for (k, b) in buffers { expected[k] = b.value.shape }
        for (k, shape) in expected.sorted(by: { $0.key < $1.key }) {
            guard let t = dictionary[k] else {
                throw DataParallelError("rank \(rank): FSDP: state dict is missing '\(k)' (expected shape \(shapeString(shape)))")
            }
            guard t.shape == shape else {
                throw DataParallelError("rank \(rank): FSDP: state dict key '\(k)': expected shape \(shapeString(shape)), found \(shapeString(t.shape))")
            }
        }
        if let extra = dictionary.keys.sorted().first(where: { expected[$0] == nil }) {
            throw DataParallelError("rank \(rank): FSDP: state dict key '\(extra)' is not a parameter or buffer of this model")
        }
        var nameOf: [ObjectIdentifier: String] = [:]
        for (k, p) in named where nameOf[ObjectIdentifier(p)] == nil { nameOf[ObjectIdentifier(p)] = k }
        var shard = localShard
        let dst = Memory.withTag(.parameters) { () -> UnsafeMutableRawPointer in
            shard.withMutableStoragePointerRaw { $0 }
        }
        for (u, unit) in plan.units.enumerated() {
            for piece in unitMaps[u].pieces(of: rank) where !piece.elements.isEmpty {
                let p = parameters[unit.parameters[piece.parameter]]
                let t0 = dictionary[nameOf[ObjectIdentifier(p)]!]!
                let t = (t0.dtype == dtype ? t0 : t0.to(dtype)).contiguous()
                (dst + (shard.offset + unitBase[u] + piece.shardOffset) * w)
                    .copyMemory(from: t.storageBlock.pointer + (t.offset + piece.elements.lowerBound) * w, byteCount: piece.elements.count * w)
            }
        }
        localShard = shard
        for (k, b) in buffers {
            let t = dictionary[k]!
            b.value = t.dtype == b.value.dtype ? t.contiguous().detached() : t.to(b.value.dtype).detached()
        }
    }

    /// Runs `body` with every parameter gathered into the model's own storages (e.g. to
    /// save `module.stateDict()`, or evaluate `module(x)` directly), then releases them.
    /// With `writeback`, changes `body` makes to the parameters are kept (each rank copies
    /// its pieces back); otherwise they are discarded.
    ///
    /// Collective. Inside `body` the units' forward hooks are suspended (the model runs
    /// on the gathered parameters as an ordinary model); do not call the wrapper's forward
    /// or run a backward through the model inside `body`.
    public func withFullParameters<R>(writeback: Bool = false, _ body: () throws -> R) throws -> R {
        var gatheredHere: [Int] = []
        defer { for u in gatheredHere { release(u) } }
        for u in plan.units.indices where !gathered[u] || !inFlight[u].isEmpty {
            if !gathered[u] || prefetched == u { gatheredHere.append(u) }
            try gather(u, phase: "withFullParameters")
        }
        suspendForwardHooks = true
        let result: R
        do { defer { suspendForwardHooks = false }; result = try body() }
        if writeback {
            let rank = group.rank, w = dtype.byteSize
            var shard = localShard
            let dst = shard.withMutableStoragePointerRaw { $0 }
            for (u, unit) in plan.units.enumerated() {
                for piece in unitMaps[u].pieces(of: rank) where !piece.elements.isEmpty {
                    let p = parameters[unit.parameters[piece.parameter]].value
                    (dst + (shard.offset + unitBase[u] + piece.shardOffset) * w)
                        .copyMemory(from: p.storageBlock.pointer + (p.offset + piece.elements.lowerBound) * w, byteCount: piece.elements.count * w)
                }
            }
            localShard = shard
        }
        return result
    }

    // MARK: - Optimizer state

    /// The optimizer state of the whole model in the format of an unsharded `Optimizer`
    /// over `parameterNames` (keys `"<parameter index>.<slot>"` with the parameters'
    /// shapes, and `"step"`), gathered unit by unit from the shards.
    ///
    /// Collective: every rank calls it at the same point and gets the whole dictionary.
    public func fullStateDict() throws(DataParallelError) -> [String: Tensor] {
        let rank = group.rank, w = dtype.byteSize
        let local = optimizer.stateDict()
        var out: [String: Tensor] = [:]
        out[OptimizerState.stepKey] = local[OptimizerState.stepKey]
        let slotNames = FullOptimizerState.slotNames(local)
        for slot in slotNames {
            let mine = local["0.\(slot)"]!.contiguous()
            for (u, unit) in plan.units.enumerated() {
                let map = unitMaps[u]
                let full = Memory.withTag(.workspace) { Tensor.zeros([map.total], dtype: dtype) }
                let count = map.counts[rank]
                do {
                    try group.allGather(send: CollectiveBuffer(count == 0 ? nil : mine.storageBlock.pointer + (mine.offset + unitBase[u]) * w, count: count, dtype: dtype),
                                        recv: CollectiveBuffer(full.count == 0 ? nil : full.storageBlock.pointer, count: full.count, dtype: dtype),
                                        counts: map.counts, options: collective)
                } catch {
                    throw DataParallelError("rank \(rank): FSDP: all-gather of optimizer slot '\(slot)' of unit '\(unit.name)' for a checkpoint failed: \(error)")
                }
                for (k, i) in unit.parameters.enumerated() {
                    out[OptimizerState.key(param: i, slot: slot)] = full.narrowed(dim: 0, start: map.parameterOffsets[k], length: map.parameterCounts[k])
                        .contiguous().reshaped(parameters[i].value.shape)
                }
            }
        }
        return out
    }

    /// Restores this rank's shard of the optimizer state from a whole-model state (as
    /// `fullStateDict()`, `ShardedOptimizer.fullStateDict()` or an unsharded `Optimizer`
    /// over the same parameters write it). Not collective.
    ///
    /// Throws, changing nothing, when a key is missing or unexpected, or a shape or dtype
    /// differs (naming the key, the parameter, the expected and the found value).
    public func loadFullStateDict(_ dictionary: [String: Tensor]) throws(DataParallelError) {
        let rank = group.rank
        var sources: [FullOptimizerState.ShardSource] = []
        for (u, unit) in plan.units.enumerated() {
            for piece in unitMaps[u].pieces(of: rank) {
                sources.append(FullOptimizerState.ShardSource(parameter: unit.parameters[piece.parameter], elements: piece.elements,
                                                              shardOffset: unitBase[u] + piece.shardOffset))
            }
        }
        let shardDict = try FullOptimizerState.shardStateDict(dictionary, current: optimizer.stateDict(), shardCount: localShard.count,
                                                              sources: sources, names: parameterNames, shapes: parameters.map(\.value.shape),
                                                              dtype: dtype, who: "rank \(rank): FSDP")
        do { try optimizer.loadStateDict(shardDict) } catch {
            throw DataParallelError("rank \(rank): FSDP: \(error)")
        }
        stepCounter = optimizer.stepCount
    }
}

extension Tensor {
    /// Mutable raw access to the storage base (copy-on-write first); add `offset`.
    mutating func withMutableStoragePointerRaw<R>(_ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        switch dtype {
        case .float32: return try withMutableStoragePointer(Float.self) { try body(UnsafeMutableRawPointer($0)) }
        case .float64: return try withMutableStoragePointer(Double.self) { try body(UnsafeMutableRawPointer($0)) }
        default: preconditionFailure("withMutableStoragePointerRaw: float32 or float64 expected, got \(dtype)")
        }
    }
}
