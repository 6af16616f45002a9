import Foundation
import Layers
import TensorCore

/// One training step, with the low-memory options: micro-batches (gradient accumulation)
/// and gradient checkpointing.
extension Trainer {
    /// Micro-batches per step (1: none).
    public var microBatches: Int { config.microBatches ?? 1 }

    /// Installs the checkpoint plans the config asks for (measured on one micro-batch).
    func setUpLowMemory() throws {
        let policy = try config.checkpointPolicy()
        if case .none = policy { return }
        let micro = (config.batchSize + microBatches - 1) / microBatches
        let probe = Tensor.zeros([micro, 1, 28, 28])
        do {
            checkpointPlans = try Checkpointing.apply(policy, to: model, input: probe)
        } catch {
            throw ConfigError("--checkpoint \(policy): \(error.description)")
        }
    }

    /// Forward, loss and backward over `inputs` in `microBatches` pieces, then one
    /// optimizer update. Returns the mean loss over the batch and the number of correct
    /// predictions.
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
    public func trainStep(inputs: Tensor, labels: Tensor) -> (loss: Double, correct: Int) {
        let n = inputs.shape[0]
        let k = Swift.min(microBatches, n)
        var lossSum = 0.0, correct = 0
        var start = 0
        for i in 0..<k {
            let len = n / k + (i < n % k ? 1 : 0)
            let x = k == 1 ? inputs : inputs.narrowed(dim: 0, start: start, length: len)
            let y = k == 1 ? labels : labels.narrowed(dim: 0, start: start, length: len)
            start += len
            Memory.mark(k == 1 ? "forward" : "forward \(i + 1)/\(k)")
            let logits = Memory.withTag(.activations) { model(x) }
            let loss = Memory.withTag(.activations) {
                Loss.crossEntropy(logits: logits, targets: y, labelSmoothing: config.labelSmoothing)
            }
            Memory.mark(k == 1 ? "backward" : "backward \(i + 1)/\(k)")
            Memory.withTag(.workspace) {
                (k == 1 ? loss : loss * (Double(len) / Double(n))).backward()
            }
            lossSum += loss.item() * Double(len)
            correct += zip(logits.detached().argmax(dim: 1).scalars(as: Int64.self), y.scalars(as: Int64.self)).filter { $0 == $1 }.count
        }
        Memory.mark("optimizer step")
        optimizerStep()
        model.zeroGrad()
        Memory.mark("done")
        return (lossSum / Double(max(n, 1)), correct)
    }
}
