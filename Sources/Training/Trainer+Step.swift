import Foundation
import Layers
import TensorCore

/// One training step, with the low-memory options: micro-batches (gradient accumulation)
/// and gradient checkpointing.
extension Trainer {
    /// Micro-batches per step (1: none).
    public var microBatches: Int { config.microBatches ?? 1 }

    /// The model's logits for `x` under the configured precision: the forward pass runs
    /// under autocast and the logits are widened to Float32 for the loss.
    public func forwardLogits(_ x: Tensor) -> Tensor {
        guard precision.policy != nil else { return model(x) }
        return Autocast.widen(precision.autocast { model(x) })
    }

    /// Installs the checkpoint plans the config asks for (measured on one micro-batch).
    func setUpLowMemory() throws {
        let policy = try config.checkpointPolicy()
        if case .none = policy { return }
        let micro = (config.batchSize + microBatches - 1) / microBatches
        let probe = Tensor.zeros([micro, 1, 28, 28])
        do {
            checkpointPlans = try precision.autocast { try Checkpointing.apply(policy, to: model, input: probe) }
        } catch {
            throw ConfigError("--checkpoint \(policy): \(error)")
        }
    }

    /// Forward, loss and backward over `inputs` in `microBatches` pieces, then one
    /// optimizer update. Returns the mean loss over the rows this process trained on, the
    /// number of correct predictions and the number of rows (all of the batch, or this
    /// rank's share under `distributed`).
    ///
    /// Each micro-batch's mean loss is weighted by its share of the batch, so the
    /// accumulated gradient equals the full batch's for models without BatchNorm (up to
    /// Float32 summation order). With BatchNorm, statistics are per micro-batch (like a
    /// ghost batch) and running statistics get one update per micro-batch; with dropout,
    /// masks are drawn per micro-batch, so they differ from the full batch's.
    ///
    /// Memory: forward allocations are charged to `.activations`, backward's transient
    /// tensors to `.workspace`, accumulated parameter gradients to `.gradients`.
    @discardableResult
    public func trainStep(inputs fullInputs: Tensor, labels fullLabels: Tensor) throws -> (loss: Double, correct: Int, count: Int) {
        var inputs = fullInputs, labels = fullLabels
        var lossScale = 1.0
        if let d = distributed {
            let (rows, scale) = d.shard(fullInputs.shape[0])
            inputs = fullInputs.narrowed(dim: 0, start: rows.lowerBound, length: rows.count)
            labels = fullLabels.narrowed(dim: 0, start: rows.lowerBound, length: rows.count)
            lossScale = scale
        }
        let n = inputs.shape[0]
        let k = Swift.max(1, Swift.min(microBatches, n))
        var lossSum = 0.0, correct = 0
        var start = 0
        func micro(_ i: Int) {
            let len = n / k + (i < n % k ? 1 : 0)
            let x = k == 1 ? inputs : inputs.narrowed(dim: 0, start: start, length: len)
            let y = k == 1 ? labels : labels.narrowed(dim: 0, start: start, length: len)
            start += len
            Memory.mark(k == 1 ? "forward" : "forward \(i + 1)/\(k)")
            let logits = Memory.withTag(.activations) { forwardLogits(x) }
            let loss = Memory.withTag(.activations) {
                Loss.crossEntropy(logits: logits, targets: y, labelSmoothing: config.labelSmoothing)
            }
            Memory.mark(k == 1 ? "backward" : "backward \(i + 1)/\(k)")
            let weight = Double(len) / Double(n) * lossScale
            Memory.withTag(.workspace) {
                let l = weight == 1 ? loss : loss * weight
                (lossScaler?.scale(l) ?? l).backward()
            }
            lossSum += loss.item() * Double(len)
            correct += zip(logits.detached().argmax(dim: 1).scalars(as: Int64.self), y.scalars(as: Int64.self)).filter { $0 == $1 }.count
        }
        if n > 0 {
            if k > 1, let d = distributed {
                try d.withoutSync { for i in 0..<(k - 1) { micro(i) } }
            } else {
                for i in 0..<(k - 1) { micro(i) }
            }
            micro(k - 1)
        } else if let empty = distributed?.stepWithoutData {
            try empty()
        } else if distributed != nil, let first = parameters.first {
            // A rank with no rows of this batch still runs backward (a zero loss over the
            // parameters), so its gradient hooks fire and the collectives line up.
            parameters.dropFirst().reduce(first.value.sum() * 0) { $0 + $1.value.sum() * 0 }.backward()
        }
        Memory.mark("optimizer step")
        try distributed?.afterBackward()
        func update() throws {
            if let step = distributed?.optimizerStep { try step() } else { optimizerStep() }
        }
        if var scaler = lossScaler {
            // Unscale after the gradients were averaged over ranks, so every rank sees the
            // same overflow and all skip together.
            if let unscale = distributed?.unscaleGradients { try scaler.unscale(using: unscale) }
            let applied = try scaler.step(parameters) { try update() }
            if !applied { try distributed?.skipStep?() }
            scaler.update()
            lossScaler = scaler
        } else {
            try update()
        }
        model.zeroGrad()
        Memory.mark("done")
        return (lossSum / Double(Swift.max(n, 1)), correct, n)
    }
}

/// How a training step runs as one rank of a data-parallel group: set `Trainer.distributed`
/// (the DataParallel module builds it from a DDP reducer or a sharded optimizer). Every
/// rank loads the same global batches (same seed) and trains on its own rows of each.
public struct DistributedStep {
    public var rank: Int
    public var size: Int
    /// This rank's rows of a global batch of `n` and the factor its mean loss is scaled
    /// by (so the averaged gradient equals the global batch's even when rows are uneven).
    public var shard: (_ n: Int) -> (rows: Range<Int>, lossScale: Double)
    /// Runs the micro-batches before the last without gradient synchronisation.
    public var withoutSync: (() throws -> Void) throws -> Void
    /// Runs after the last backward, before the optimizer update (gradient allreduce).
    public var afterBackward: () throws -> Void
    /// Replaces the optimizer update (a sharded optimizer), or nil for the usual one.
    public var optimizerStep: (() throws -> Void)?
    /// Sums a few numbers over all ranks (epoch metrics).
    public var sumOverRanks: ([Double]) throws -> [Double]
    /// The learning rate and step count to log when `optimizerStep` replaces the trainer's
    /// optimizer (nil: the trainer's own).
    public var learningRate: (() -> Double?)?
    public var stepCount: (() -> Int)?
    /// With `optimizerStep`: the whole optimizer state for checkpoints (a collective every
    /// rank runs; unsharded format) and its inverse for `restore`. nil: the trainer's own.
    public var optimizerStateDict: (() throws -> [String: Tensor])?
    public var loadOptimizerStateDict: (([String: Tensor]) throws -> Void)?
    /// When the parameters are sharded (ZeRO stage 3): the model's full state dict for
    /// checkpoints (a collective every rank runs) and its inverse for `restore`, and the
    /// step of a rank whose share of the batch is empty (it must still take part in the
    /// forward and backward collectives). nil: the model's own / a zero loss's backward.
    public var modelStateDict: (() throws -> [(String, Tensor)])?
    public var loadModelStateDict: (([String: Tensor]) throws -> Void)?
    public var stepWithoutData: (() throws -> Void)?
    /// With dynamic loss scaling, when the gradients are not the parameters' `.grad`
    /// (ZeRO stage 3 keeps only a shard): divides them by the scale and returns whether
    /// they are finite on every rank (a collective, so every rank skips together), and
    /// ends a step the scaler skipped (`optimizerStep` is then not called). nil: the
    /// scaler unscales `.grad` itself.
    public var unscaleGradients: ((_ scale: Double) throws -> Bool)?
    public var skipStep: (() throws -> Void)?

    public init(rank: Int, size: Int, shard: @escaping (_ n: Int) -> (rows: Range<Int>, lossScale: Double),
                withoutSync: @escaping (() throws -> Void) throws -> Void, afterBackward: @escaping () throws -> Void,
                optimizerStep: (() throws -> Void)? = nil, sumOverRanks: @escaping ([Double]) throws -> [Double]) {
        self.rank = rank
        self.size = size
        self.shard = shard
        self.withoutSync = withoutSync
        self.afterBackward = afterBackward
        self.optimizerStep = optimizerStep
        self.sumOverRanks = sumOverRanks
    }
}
