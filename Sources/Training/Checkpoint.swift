import Foundation
import Layers
import Optimizers
import TensorCore

/// A training checkpoint: model state, optimizer state, the config, the default
/// generator's state and the position in training, in one safetensors file.
///
/// Keys: `model.<state dict key>` and `optimizer.<slot key>`; metadata holds the config
/// (JSON), the RNG state (JSON), the epoch to resume at and the step count. Written
/// atomically (temp + fsync + rename), so a crash mid-save leaves the previous checkpoint.
public struct Checkpoint {
    public var config: TrainConfig
    public var model: [String: Tensor]
    public var optimizer: [String: Tensor]
    public var rng: RNGState
    /// The first epoch that has not been completed.
    public var nextEpoch: Int
    /// The dynamic loss scaler's state (`--precision fp16`), empty otherwise.
    public var scaler: [String: Tensor] = [:]
    public var format = "loom-checkpoint-1"

    public func save(to path: String) throws {
        var tensors: [String: Tensor] = [:]
        for (k, v) in model { tensors["model." + k] = v }
        for (k, v) in optimizer { tensors["optimizer." + k] = v }
        for (k, v) in scaler { tensors["scaler." + k] = v }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let meta = ["format": format,
                    "config": String(decoding: try enc.encode(config), as: UTF8.self),
                    "rng": String(decoding: try enc.encode(rng), as: UTF8.self),
                    "next_epoch": String(nextEpoch)]
        try SafeTensors.save(tensors, to: path, metadata: meta)
    }

    public static func load(_ path: String) throws -> Checkpoint {
        let (tensors, meta) = try SafeTensors.load(path)
        guard meta["format"] == "loom-checkpoint-1", let cfg = meta["config"], let rng = meta["rng"],
              let next = meta["next_epoch"].flatMap(Int.init) else {
            throw ConfigError("\(path): not a Loom training checkpoint (expected metadata format, config, rng, next_epoch; "
                              + "found keys \(meta.keys.sorted())). For plain weights use `loom predict --weights`.")
        }
        let dec = JSONDecoder()
        var model: [String: Tensor] = [:], opt: [String: Tensor] = [:], scaler: [String: Tensor] = [:]
        for (k, v) in tensors {
            if k.hasPrefix("model.") {
                model[String(k.dropFirst(6))] = v
            } else if k.hasPrefix("optimizer.") {
                opt[String(k.dropFirst(10))] = v
            } else if k.hasPrefix("scaler.") {
                scaler[String(k.dropFirst(7))] = v
            }
        }
        return Checkpoint(config: try dec.decode(TrainConfig.self, from: Data(cfg.utf8)), model: model, optimizer: opt,
                          rng: try dec.decode(RNGState.self, from: Data(rng.utf8)), nextEpoch: next, scaler: scaler)
    }
}
