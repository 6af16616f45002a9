import Collectives
import Foundation
import Layers
import Optimizers
import TensorCore
import Training

/// Turns a `Trainer` into one rank of a data-parallel run (PyTorch DDP's recipe, Li et
/// al. 2020): every rank loads the same global batches (same seed), trains on its own
/// rows of each (`BatchShard`), and a `DistributedDataParallel` reducer averages gradients
/// during backward; micro-batches before the last run under `noSync`; epoch metrics are
/// summed over ranks; only rank 0 writes metrics and checkpoints.
///
/// With the same global batch size, N ranks compute the same update as one process (up
/// to Float32 summation order; see `DistributedDataParallel`). BatchNorm statistics are
/// per rank (as in PyTorch without SyncBatchNorm).
public enum DataParallelTraining {
    /// Attaches `trainer` to `group` (collective: every rank calls it at the same point,
    /// after building its trainer with the same config). Returns the reducer.
    @discardableResult
    public static func attach(_ trainer: Trainer, group: any ProcessGroup,
                              options: DDPOptions = DDPOptions()) throws(DataParallelError) -> DistributedDataParallel {
        let ddp = try DistributedDataParallel(trainer.model, group: group, options: options)
        let rank = group.rank, size = group.size
        trainer.distributed = DistributedStep(
            rank: rank, size: size,
            shard: { n in (BatchShard.range(rank: rank, batch: n, size: size), BatchShard.lossScale(rank: rank, batch: n, size: size)) },
            withoutSync: { body in try ddp.noSync(body) },
            afterBackward: { try ddp.finishGradientSync() },
            sumOverRanks: { values in
                var v = values
                try v.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .sum) }
                return v
            })
        if rank != 0 { trainer.quiet = true }
        return ddp
    }

    /// Attaches `trainer` to `group` with a ZeRO-style sharded weight update instead of
    /// DDP's allreduce (Xu et al. 2020; Rajbhandari et al. 2020): gradients are
    /// reduce-scattered, each rank updates its shard of the flattened weights with the
    /// trainer's own update rule (which must be elementwise: SGD, momentum, Adam(W), not
    /// global-norm clipping), and the weights are all-gathered. The trainer's full
    /// optimizer state is freed: each rank keeps 1/N of it. Stage 2 also keeps only the
    /// shard of the gradients, so it cannot accumulate micro-batches (use stage 1).
    ///
    /// Checkpoints hold the whole optimizer state (gathered from the shards, in the
    /// unsharded format), so `restore` resumes exactly, also at another world size, and a
    /// DDP run's checkpoint resumes sharded and the reverse.
    @discardableResult
    public static func attachSharded(_ trainer: Trainer, group: any ProcessGroup, stage: ShardingStage,
                                     collective: CollectiveOptions = .native) throws(DataParallelError) -> ShardedOptimizer {
        let rank = group.rank
        if stage == .gradients && trainer.microBatches > 1 {
            throw DataParallelError("rank \(rank): ZeRO stage 2 keeps only this rank's shard of the gradients, so it cannot accumulate \(trainer.microBatches) micro-batches; use stage 1")
        }
        try requireElementwise(trainer, group: group)
        let sharded = try ShardedOptimizer(trainer.model, group: group, transformation: trainer.optimizer.transformation,
                                           stage: stage, collective: collective)
        installShardedStep(trainer, group: group, step: { try sharded.step() }, learningRate: { sharded.optimizer.learningRate },
                           stepCount: { sharded.stepCount }, stateDict: { try sharded.fullStateDict() },
                           loadStateDict: { try sharded.loadFullStateDict($0) })
        // fp16's loss scaler: unscale the averaged gradient shards, agree on overflow over ranks.
        trainer.distributed?.unscaleGradients = { try sharded.unscaleGradients(by: $0) }
        trainer.distributed?.skipStep = { try sharded.skipStep() }
        return sharded
    }

    /// Attaches `trainer` to `group` with fully sharded data parallelism (ZeRO stage 3,
    /// `FullyShardedDataParallel`): parameters, gradients and optimizer state are all
    /// sharded; each unit's parameters are gathered around its forward and backward by
    /// the model's forward hooks, so the trainer's own forward and evaluation run on the
    /// sharded model unchanged. The update rule must be elementwise (no `--clip-norm`).
    /// Mixed precision works: with fp16's loss scaler each rank unscales its gradient
    /// shard and the overflow flag is agreed by one allreduce, so every rank skips the
    /// same steps (`FullyShardedDataParallel.unscaleGradients`).
    ///
    /// Checkpoints hold the full model and the whole optimizer state (gathered, unsharded
    /// formats), so a run resumes at another world size, under DDP or in one process.
    @discardableResult
    public static func attachFullySharded(_ trainer: Trainer, group: any ProcessGroup, units: FSDPUnitPolicy = .perLayer,
                                          collective: CollectiveOptions = .native, prefetch: Bool = true) throws(DataParallelError) -> FullyShardedDataParallel {
        let rank = group.rank
        try requireElementwise(trainer, group: group)
        let fsdp = try FullyShardedDataParallel(trainer.model, group: group, transformation: trainer.optimizer.transformation,
                                                units: units, collective: collective, prefetch: prefetch)
        installShardedStep(trainer, group: group, step: { try fsdp.step() }, learningRate: { fsdp.optimizer.learningRate },
                           stepCount: { fsdp.stepCount }, stateDict: { try fsdp.fullStateDict() },
                           loadStateDict: { try fsdp.loadFullStateDict($0) })
        trainer.distributed?.modelStateDict = { try fsdp.fullParameterStateDict() }
        trainer.distributed?.loadModelStateDict = { try fsdp.loadFullParameterStateDict($0) }
        trainer.distributed?.stepWithoutData = { fsdp.participateWithoutData() }
        // fp16's loss scaler: unscale the gradient shards, agree on overflow over ranks.
        trainer.distributed?.unscaleGradients = { try fsdp.unscaleGradients(by: $0) }
        trainer.distributed?.skipStep = { try fsdp.skipStep() }
        return fsdp
    }
    /// A sharded update applies the trainer's rule to each rank's shard: it must be elementwise.
    private static func requireElementwise(_ trainer: Trainer, group: any ProcessGroup) throws(DataParallelError) {
        guard trainer.optimizer.transformation.isElementwise else {
            throw DataParallelError("rank \(group.rank): the sharded update applies the optimizer to a 1/\(group.size) shard, so the rule must be elementwise (SGD, momentum, Adam, AdamW); global-norm clipping (--clip-norm) is not")
        }
    }

    /// The trainer's step as one rank of a sharded update (stages 1–3): its own optimizer
    /// state is freed, `step` replaces the update, and the sharded optimizer's learning
    /// rate, step count and gathered state feed the logs and checkpoints.
    private static func installShardedStep(_ trainer: Trainer, group: any ProcessGroup, step: @escaping () throws -> Void,
                                           learningRate: @escaping () -> Double?, stepCount: @escaping () -> Int,
                                           stateDict: @escaping () throws -> [String: Tensor],
                                           loadStateDict: @escaping ([String: Tensor]) throws -> Void) {
        let rank = group.rank, size = group.size
        trainer.dropOptimizerState()
        var d = DistributedStep(
            rank: rank, size: size,
            shard: { n in (BatchShard.range(rank: rank, batch: n, size: size), BatchShard.lossScale(rank: rank, batch: n, size: size)) },
            withoutSync: { body in try body() },
            afterBackward: {},
            optimizerStep: step,
            sumOverRanks: { values in
                var v = values
                try v.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .sum) }
                return v
            })
        d.learningRate = learningRate
        d.stepCount = stepCount
        d.optimizerStateDict = stateDict
        d.loadOptimizerStateDict = loadStateDict
        trainer.distributed = d
        if rank != 0 { trainer.quiet = true }
    }
}
