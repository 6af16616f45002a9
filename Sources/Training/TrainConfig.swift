import Foundation
import Layers
import Optimizers

/// Everything that defines a training run; saved in every checkpoint so a run can be resumed
/// or evaluated from its checkpoint alone.
public struct TrainConfig: Codable, Sendable, Equatable {
    public var model = "lenet5"
    public var epochs = 10
    public var batchSize = 64
    /// sgd, adam or adamw.
    public var optimizer = "sgd"
    public var lr = 0.05
    public var momentum = 0.9
    public var nesterov = false
    public var weightDecay = 5e-4
    /// constant, step, cosine or onecycle (stepped per batch).
    public var schedule = "cosine"
    public var warmupEpochs = 0.0
    /// For schedule "step": decay by `stepGamma` every `stepEpochs` epochs.
    public var stepEpochs = 10
    public var stepGamma = 0.1
    /// l2, l1 or linf (BatchNorm layers of convnet-bn and resnet20).
    public var norm = "l2"
    public var ghostBatchSize: Int? = nil
    public var dropout = 0.5
    public var labelSmoothing = 0.0
    public var clipNorm: Double? = nil
    /// Augmentation: random crop padding (0: off), horizontal flip, random erasing.
    public var cropPadding = 0
    public var flip = false
    public var erasing = false
    public var seed: UInt64 = 0
    /// Threads for Loom's kernels and OpenBLAS (0: all cores).
    public var threads = 0
    public var dataDir = "/usr/share/datasets/fashion-mnist"
    /// Use only the first N training / test samples (0: all), for quick runs.
    public var trainLimit = 0
    public var testLimit = 0
    public var prefetch = 2
    // Low-memory training (issue 4). Optional so checkpoints written before they existed
    // still decode; nil means the default.
    /// Split each batch into this many micro-batches and accumulate gradients (nil: 1).
    public var microBatches: Int? = nil
    /// Gradient checkpointing: none, sqrt or budget:BYTES (nil: none).
    public var checkpointing: String? = nil
    /// Compute precision: fp32, fp16 or bf16 (nil: fp32).
    public var precision: String? = nil
    /// Under fp16/bf16, run L1 / L∞ batch norm in half (nil: false); see `AutocastPolicy`.
    public var halfBatchNorm: Bool? = nil
    /// Fail before training when the planned peak of tensor memory exceeds this many bytes.
    public var memoryCap: Int? = nil
    /// Workspace budget of one conv2d call in bytes (nil: the kernel default, 4 MiB).
    public var workspaceLimit: Int? = nil

    public init() {}

    /// The mixed-precision setting named by `precision` and `halfBatchNorm`.
    public func mixedPrecision() throws(ConfigError) -> MixedPrecision {
        do {
            return try MixedPrecision(parsing: precision ?? "fp32", halfBatchNorm: halfBatchNorm ?? false)
        } catch {
            throw ConfigError(error.description)
        }
    }

    /// The checkpoint policy named by `checkpointing`.
    public func checkpointPolicy() throws(ConfigError) -> CheckpointPolicy {
        do {
            return try CheckpointPolicy(parsing: checkpointing ?? "none")
        } catch {
            throw ConfigError(error.description)
        }
    }

    /// The BatchNorm kind named by `norm`.
    public func batchNormKind() throws(ConfigError) -> BatchNormKind {
        switch norm {
        case "l2": return .l2
        case "l1": return .l1
        case "linf": return .linf(topK: nil)
        default: throw ConfigError("--norm '\(norm)': expected l2, l1 or linf")
        }
    }

    /// Checks every field; the message names the flag, the bad value and what was expected.
    public func validate() throws(ConfigError) {
        if epochs < 1 { throw ConfigError("--epochs \(epochs): expected at least 1") }
        if batchSize < 1 { throw ConfigError("--batch-size \(batchSize): expected at least 1") }
        if !(lr > 0) || !lr.isFinite { throw ConfigError("--lr \(lr): expected a positive learning rate") }
        if !["sgd", "adam", "adamw"].contains(optimizer) { throw ConfigError("--optimizer '\(optimizer)': expected sgd, adam or adamw") }
        if !["constant", "step", "cosine", "onecycle"].contains(schedule) {
            throw ConfigError("--schedule '\(schedule)': expected constant, step, cosine or onecycle")
        }
        if !(0..<1).contains(momentum) { throw ConfigError("--momentum \(momentum): expected a value in [0, 1)") }
        if weightDecay < 0 { throw ConfigError("--weight-decay \(weightDecay): expected >= 0") }
        if !(0..<1).contains(dropout) { throw ConfigError("--dropout \(dropout): expected a value in [0, 1)") }
        if !(0...1).contains(labelSmoothing) { throw ConfigError("--label-smoothing \(labelSmoothing): expected a value in [0, 1]") }
        if warmupEpochs < 0 { throw ConfigError("--warmup-epochs \(warmupEpochs): expected >= 0") }
        if let c = clipNorm, !(c > 0) { throw ConfigError("--clip-norm \(c): expected a positive norm") }
        if cropPadding < 0 { throw ConfigError("--crop-padding \(cropPadding): expected >= 0") }
        if threads < 0 { throw ConfigError("--threads \(threads): expected >= 0") }
        if trainLimit < 0 || testLimit < 0 { throw ConfigError("--train-limit/--test-limit: expected >= 0") }
        if let g = ghostBatchSize, g < 1 { throw ConfigError("--ghost-batch-size \(g): expected at least 1") }
        _ = try batchNormKind()
        _ = try checkpointPolicy()
        if let k = microBatches {
            if k < 1 { throw ConfigError("--micro-batches \(k): expected at least 1") }
            if k > batchSize { throw ConfigError("--micro-batches \(k): expected at most the batch size (\(batchSize))") }
        }
        _ = try mixedPrecision()
        if let c = memoryCap, c < 1 { throw ConfigError("--memory-cap \(c): expected a positive byte count") }
        if let w = workspaceLimit, w < 1 { throw ConfigError("--workspace-limit \(w): expected a positive byte count") }
    }
}

/// A bad configuration, flag or file; the message names the value and what was expected.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
