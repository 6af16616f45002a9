import Collectives
import Foundation
import Layers
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
}
