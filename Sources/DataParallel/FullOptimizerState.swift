import Optimizers
import TensorCore

/// The whole-model optimizer state that sharded optimizers (`ShardedOptimizer`,
/// `FullyShardedDataParallel`) gather for checkpoints and cut their shards from: the
/// format of an unsharded `Optimizer` over the same parameters (`"<parameter>.<slot>"` with
/// the parameter's shape, and `"step"`). A sharded optimizer runs its rule on one flat
/// tensor, so its own state has keys `"0.<slot>"`.
enum FullOptimizerState {
    /// The slot names of a flat-shard optimizer's state (`"0.<slot>"` keys), sorted.
    static func slotNames(_ shardState: [String: Tensor]) -> [String] {
        shardState.keys.filter { $0.hasPrefix("0.") }.map { String($0.dropFirst(2)) }.sorted()
    }

    /// Checks that `dictionary` holds no key beyond `"step"` and `slots` of every parameter,
    /// and every one of those with the parameter's shape and `dtype`. Every rank checks every
    /// key (not only its own pieces), so all ranks accept or reject a file alike.
    static func validate(_ dictionary: [String: Tensor], slots: [String], names: [String], shapes: [[Int]],
                         dtype: DType, who: String) throws(DataParallelError) {
        let known = Set(slots.flatMap { slot in names.indices.map { OptimizerState.key(param: $0, slot: slot) } } + [OptimizerState.stepKey])
        if let extra = dictionary.keys.sorted().first(where: { !known.contains($0) }) {
            throw DataParallelError("\(who): optimizer state key '\(extra)' is not a state of this model's optimizer (expected slots \(slots) for \(names.count) parameters)")
        }
        for slot in slots {
            for i in names.indices {
                let key = OptimizerState.key(param: i, slot: slot)
                guard let t = dictionary[key] else {
                    throw DataParallelError("\(who): optimizer state has no key '\(key)' (slot '\(slot)' of parameter '\(names[i])')")
                }
                guard t.shape == shapes[i], t.dtype == dtype else {
                    throw DataParallelError("\(who): optimizer state key '\(key)' (parameter '\(names[i])'): expected \(shapeString(shapes[i])) \(dtype), found \(shapeString(t.shape)) \(t.dtype)")
                }
            }
        }
    }

    /// Where one piece of a rank's flat shard comes from: elements `elements` of parameter
    /// `parameter` (its index in the model's parameter list), at `shardOffset` in the shard.
    struct ShardSource {
        let parameter: Int
        let elements: Range<Int>
        let shardOffset: Int
    }

    /// Validates a full (unsharded) optimizer state dictionary and cuts this rank's flat
    /// shard of every slot out of it: the state dict (`"step"` and `"0.<slot>"` tensors of
    /// `shardCount` elements) a flat-shard optimizer loads. `current` is that optimizer's
    /// own state dict (it names the slots).
    static func shardStateDict(_ dictionary: [String: Tensor], current: [String: Tensor], shardCount: Int, sources: [ShardSource],
                               names: [String], shapes: [[Int]], dtype: DType, who: String) throws(DataParallelError) -> [String: Tensor] {
        let w = dtype.byteSize
        var shardDict: [String: Tensor] = [:]
        if let step = dictionary[OptimizerState.stepKey] { shardDict[OptimizerState.stepKey] = step }
        let slotNames = slotNames(current)
        try validate(dictionary, slots: slotNames, names: names, shapes: shapes, dtype: dtype, who: who)
        for slot in slotNames {
            let shard = Memory.withTag(.optimizerState) { Tensor.zeros([shardCount], dtype: dtype) }
            for source in sources where !source.elements.isEmpty {
                let src = dictionary[OptimizerState.key(param: source.parameter, slot: slot)]!.contiguous()
                (shard.storageBlock.pointer + source.shardOffset * w)
                    .copyMemory(from: src.storageBlock.pointer + (src.offset + source.elements.lowerBound) * w, byteCount: source.elements.count * w)
            }
            shardDict["0.\(slot)"] = shard
        }
        return shardDict
    }
}
