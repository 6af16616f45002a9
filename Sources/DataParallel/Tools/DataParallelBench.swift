import Foundation
import Collectives
import Layers
import Optimizers
import TensorCore

/// A data-parallel training throughput measurement for `loom ddp-bench` (overlap on vs
/// off, 1 vs 2 ranks): synthetic inputs, SGD with momentum, `steps` timed steps after
/// `warmup` untimed ones. Collective: every rank calls it with the same arguments.
///
/// Reports images per second over all ranks (the slowest rank's time) and the seconds
/// per step spent in `finishGradientSync`, the communication backward did not hide.
public enum DataParallelBench {
    /// One measurement.
    public struct Result: Sendable, CustomStringConvertible {
        /// Ranks.
        public var worldSize: Int
        /// Whether buckets were all-reduced during backward.
        public var overlap: Bool
        /// Samples per rank per step.
        public var batchPerRank: Int
        /// Timed steps.
        public var steps: Int
        /// Samples per second over all ranks.
        public var imagesPerSecond: Double
        /// Mean wall time of a step (slowest rank).
        public var secondsPerStep: Double
        /// Mean time per step inside `finishGradientSync` (slowest rank).
        public var syncSecondsPerStep: Double

        public var description: String {
            String(format: "ranks %d  overlap %@  batch/rank %d  %.1f images/s  %.2f ms/step  sync %.2f ms/step",
                   worldSize, overlap ? "on " : "off", batchPerRank, imagesPerSecond, secondsPerStep * 1e3, syncSecondsPerStep * 1e3)
        }
    }

    /// Trains `model` (already built on every rank) for `warmup + steps` steps on random
    /// inputs of shape `[batchPerRank] + inputShape` with labels in `0..<classes`.
    public static func run(model: Module, group: any ProcessGroup, inputShape: [Int], classes: Int, batchPerRank: Int,
                           steps: Int, warmup: Int = 2, options: DDPOptions = DDPOptions()) throws -> Result {
        let ddp = try DistributedDataParallel(model, group: group, options: options)
        defer { ddp.removeHooks() }
        var opt = Optimizer(try sgd(lr: 0.01, momentum: 0.9), params: model.parameters.map(\.value))
        let g = Generator(seed: UInt64(100 + group.rank))
        let x = Tensor.randn([batchPerRank] + inputShape, generator: g)
        let y = Tensor.randint(0, classes, [batchPerRank], generator: g)
        model.train()
        var start = DispatchTime.now().uptimeNanoseconds
        var syncStart = 0.0
        for s in 0..<(warmup + steps) {
            if s == warmup {
                try group.barrier()
                start = DispatchTime.now().uptimeNanoseconds
                syncStart = ddp.syncSeconds
            }
            Loss.crossEntropy(logits: ddp(x), targets: y).backward()
            try ddp.finishGradientSync()
            let params = model.parameters
            var values = params.map { _ in Tensor.zeros([0]) }
            for i in params.indices { swap(&values[i], &params[i].value) }
            opt.step(&values)
            for i in params.indices { swap(&values[i], &params[i].value) }
            model.zeroGrad()
        }
        var times: [Double] = [Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, ddp.syncSeconds - syncStart]
        try times.withUnsafeMutableBufferPointer { try group.allReduce(CollectiveBuffer($0), op: .max) }
        let perStep = times[0] / Double(max(steps, 1))
        return Result(worldSize: group.size, overlap: options.overlap, batchPerRank: batchPerRank, steps: steps,
                      imagesPerSecond: Double(batchPerRank * group.size) / perStep, secondsPerStep: perStep,
                      syncSecondsPerStep: times[1] / Double(max(steps, 1)))
    }
}
