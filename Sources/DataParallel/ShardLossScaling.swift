import Collectives
import TensorCore
import Training

/// Dynamic loss scaling over sharded gradients (ZeRO stages 1–3): each rank holds only
/// its shard of the averaged gradients, so it unscales that shard and the ranks agree on
/// overflow by one allreduce (max) of a non-finite flag; every rank then skips together.
///
/// The shard is multiplied elementwise by `Float(1 / scale)` (or `1 / scale` for float64),
/// the product `LossScaler.unscale` forms on a full gradient; with the in-process native
/// reduction a shard is bitwise the slice of DDP's averaged gradient, so the unscaled values
/// and the skip decision equal DDP + `LossScaler`.
///
/// Collective (one allreduce of one element). Throws (a `CollectiveError`) when it fails.
func unscaleShardAndAgree(_ shard: Tensor, scale: Double, group: any ProcessGroup) throws -> Bool {
    let inverse = 1 / scale
    let n = shard.count
    var finite = true
    if n > 0 {
        let base = shard.storageBlock.pointer
        if shard.dtype == .float32 {
            let a = (base + shard.offset * 4).assumingMemoryBound(to: Float.self), f = Float(inverse)
            for e in 0..<n { a[e] *= f }
        } else {
            let a = (base + shard.offset * 8).assumingMemoryBound(to: Double.self)
            for e in 0..<n { a[e] *= inverse }
        }
        finite = LossScaler.allFinite(shard)
    }
    var flag: [Float] = [finite ? 0 : 1]
    try flag.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .max) }
    return flag[0] == 0
}
