import Collectives
import Layers
import TensorCore

/// Batch normalisation whose batch statistics are computed over the batches of all ranks
/// of a group (PyTorch's `nn.SyncBatchNorm`), so N ranks with B/N samples each normalise
/// exactly as one process with batch B does (Ioffe & Szegedy 2015; the cross-replica
/// statistics of Li et al. 2020 / Goyal et al. 2017 large-batch training).
///
/// Training, input [N, C, ...] (statistics per channel over all dims but 1):
/// `n = Σ_ranks count`, `μ = Σ_ranks Σ x / n`, `σ² = Σ_ranks Σ (x − μ)² / n` (biased, two
/// passes), `y = (x − μ) / sqrt(σ² + eps) · γ + β`. Running statistics as PyTorch:
/// `running = (1 − m) · running + m · batch`, with the unbiased `σ² · n / (n − 1)`.
/// Evaluation (with running statistics) is local: `(x − running_mean) / sqrt(running_var + eps)`.
///
/// Backward: the loss of the whole job is the sum of every rank's loss, and each rank's
/// statistics feed every rank's output, so the gradient reaching a per-rank partial sum
/// is the sum over ranks of the gradients reaching the global statistic. Both all-reduced
/// sums are built with `differentiableAllReduceSum`: its forward is the all-reduced
/// value and its backward all-reduces the incoming gradient (the two extra allreduces of
/// PyTorch's SyncBN backward, `sum_dy` and `sum_dy_xmu`, arise from these).
///
/// Parameters and buffers carry `BatchNorm2d`'s names (`weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`), so state dicts interchange; `init(converting:group:)`
/// copies a `BatchNormBase` (L2 kind, no ghost batches).
///
/// Every rank must call forward (training) and backward the same number of times, in the
/// same order relative to other collectives of the group. Only the L2 kind is supported.
public final class SyncBatchNorm: Module {
    /// γ [C] (init 1), or nil when not affine.
    public let weight: Parameter?
    /// β [C] (init 0), or nil when not affine.
    public let bias: Parameter?
    /// Running mean [C] (init 0), or nil without running statistics.
    public let runningMean: Buffer?
    /// Running unbiased variance [C] (init 1), or nil without running statistics.
    public let runningVar: Buffer?
    /// Batches seen in training (int64 scalar).
    public let numBatchesTracked: Buffer?
    /// C.
    public let numFeatures: Int
    /// Added to the variance.
    public let eps: Double
    /// Running-statistics momentum; nil: cumulative average.
    public let momentum: Double?
    /// The ranks whose batches are normalised together.
    public let group: any ProcessGroup

    /// A synchronised batch norm over `features` channels of `group`'s ranks.
    public init(_ features: Int, group: any ProcessGroup, eps: Double = 1e-5, momentum: Double? = 0.1,
                affine: Bool = true, trackRunningStats: Bool = true) {
        precondition(features > 0, "SyncBatchNorm: features \(features) must be > 0")
        precondition(eps >= 0, "SyncBatchNorm: eps \(eps) must be non-negative")
        numFeatures = features
        self.eps = eps
        self.momentum = momentum
        self.group = group
        weight = affine ? Parameter(Tensor.ones([features])) : nil
        bias = affine ? Parameter(Tensor.zeros([features])) : nil
        runningMean = trackRunningStats ? Buffer(Tensor.zeros([features])) : nil
        runningVar = trackRunningStats ? Buffer(Tensor.ones([features])) : nil
        numBatchesTracked = trackRunningStats ? Buffer(Tensor(scalar: Int64(0))) : nil
        super.init()
    }

    /// A SyncBatchNorm with the settings, parameters and running statistics of `bn`
    /// (PyTorch's `convert_sync_batchnorm` for one layer). Throws for L1/L∞ kinds or ghost batches.
    public convenience init(converting bn: BatchNormBase, group: any ProcessGroup) throws(DataParallelError) {
        guard case .l2 = bn.norm, bn.ghostBatchSize == nil else {
            throw DataParallelError("SyncBatchNorm: cannot convert a batch norm of kind \(bn.norm) with ghost batch \(bn.ghostBatchSize.map(String.init) ?? "none"); expected L2 without ghost batches")
        }
        self.init(bn.numFeatures, group: group, eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats)
        if let w = bn.weight, let b = bn.bias {
            weight!.value = noGrad { w.value.detached().contiguous() }.requiringGrad()
            bias!.value = noGrad { b.value.detached().contiguous() }.requiringGrad()
        }
        if let rm = bn.runningMean, let rv = bn.runningVar, let nbt = bn.numBatchesTracked {
            runningMean!.value = rm.value
            runningVar!.value = rv.value
            numBatchesTracked!.value = nbt.value
        }
    }

    /// Whether γ and β exist.
    public var affine: Bool { weight != nil }

    public override func forward(_ x: Tensor) -> Tensor {
        let c = numFeatures
        precondition(x.rank >= 2 && x.shape[1] == c, "SyncBatchNorm(\(c)): expected input [N, \(c), ...], got \(shapeString(x.shape))")
        var bshape = [Int](repeating: 1, count: x.rank)
        bshape[1] = c
        let reduce = [0] + Array(2..<x.rank)
        var y: Tensor
        if isTraining || runningMean == nil {
            let local = x.count / c
            let total = allReduceCount(local)
            precondition(total > 1, "SyncBatchNorm(\(c)), rank \(group.rank): expected more than 1 value per channel over all ranks when training, got \(total)")
            let n = Double(total)
            let mean = differentiableAllReduceSum(x.sum(dims: reduce), group: group, what: "SyncBatchNorm mean") / n
            let d = x - mean.reshaped(bshape)
            let variance = differentiableAllReduceSum((d * d).sum(dims: reduce), group: group, what: "SyncBatchNorm variance") / n
            y = d * (variance + eps).rsqrt().reshaped(bshape)
            if isTraining, !GradMode.isRecomputing, let rm = runningMean, let rv = runningVar, let nbt = numBatchesTracked {
                noGrad {
                    let tracked = Int64(nbt.value.item()) + 1
                    nbt.value = Tensor(scalar: tracked)
                    let m = momentum ?? 1 / Double(tracked)
                    let unbiased = variance.detached() * (n / (n - 1))
                    rm.value = (rm.value * (1 - m) + mean.detached().to(rm.value.dtype) * m).detached()
                    rv.value = (rv.value * (1 - m) + unbiased.to(rv.value.dtype) * m).detached()
                }
            }
        } else {
            let rm = runningMean!.value.to(x.dtype).reshaped(bshape)
            let rv = runningVar!.value.to(x.dtype).reshaped(bshape)
            y = (x - rm) * (rv + eps).rsqrt()
        }
        if let w = weight?.value, let b = bias?.value {
            let wv = w.dtype == x.dtype ? w : w.to(x.dtype)
            let bv = b.dtype == x.dtype ? b : b.to(x.dtype)
            y = y * wv.reshaped(bshape) + bv.reshaped(bshape)
        }
        return y
    }

    /// The number of values per channel summed over ranks (one small allreduce).
    private func allReduceCount(_ local: Int) -> Int {
        var v: [Int64] = [Int64(local)]
        do {
            try v.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .sum) }
        } catch {
            preconditionFailure("SyncBatchNorm(\(numFeatures)): rank \(group.rank), step \(group.step): allreduce of the batch size failed: \(error)")
        }
        return Int(v[0])
    }
}

/// Sum over the ranks of `group` that gradients flow through: the forward value is the
/// all-reduced sum of `x` (every rank's `x` must have the same shape), and the gradient
/// reaching `x` is the all-reduced sum of the gradient reaching the result (the adjoint
/// of "sum over ranks, then use everywhere").
///
/// Built from recorded ops only (no new op name): `(x − x.detached()) + S` has value `S`
/// exactly (the first term is 0) and passes its gradient to `x` unchanged; a tensor hook
/// on that sum replaces its gradient by the allreduce. Collective failures trap with
/// the rank, step and `what` (a hook cannot throw): a dead peer ends the process after
/// the group's timeout instead of hanging it.
public func differentiableAllReduceSum(_ x: Tensor, group: any ProcessGroup, what: String = "differentiableAllReduceSum") -> Tensor {
    var s = noGrad { x.detached().contiguous() }
    do { try group.allReduce(&s, op: .sum) } catch {
        preconditionFailure("\(what): rank \(group.rank), step \(group.step): forward allreduce failed: \(error)")
    }
    guard GradMode.isEnabled, x.requiresGrad else { return s }
    let out = (x - x.detached()) + s
    out.registerHook { g in
        var total = noGrad { g.detached().contiguous() }
        do { try group.allReduce(&total, op: .sum) } catch {
            preconditionFailure("\(what): rank \(group.rank), step \(group.step): backward allreduce failed: \(error)")
        }
        return total
    }
    return out
}
