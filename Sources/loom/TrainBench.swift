import ArgumentParser
import Dispatch
import Foundation
import Layers
import Models
import Optimizers
import TensorCore
import TensorKernels

/// `loom train-bench`: steady-state training throughput of a zoo model on random data
/// (forward, cross-entropy, backward, SGD step), without data loading, for comparison with
/// Benchmarks/torch_train.py on the same shapes.
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train-bench",
        abstract: "Measure training images/s of a model on random inputs (median of timed windows).")
    @Option(help: "Zoo model.") var model: String = "lenet5"
    @Option(help: "Batch size.") var batchSize: Int = 64
    @Option(help: "Warm-up steps.") var warmup: Int = 5
    @Option(help: "Steps per timed window.") var steps: Int = 20
    @Option(help: "Timed windows (the median is reported).") var windows: Int = 5
    @Option(help: "Threads (0: all cores).") var threads: Int = 0
    @Flag(inversion: .prefixedNo, help: "conv2d: split each batch over Loom's workers with single-threaded GEMMs (default), or thread each GEMM through OpenBLAS.") var convBatchSplit = true
    @Flag(inversion: .prefixedNo, help: "conv2d: weight gradients of the layers the direct kernel takes also direct (default), or im2col + GEMM (see Conv2dDirect.weightGradient).") var directWeightGradient = true
    @Flag(help: "Run a competing busy-loop process on one core while measuring.") var busy = false
    @Option(help: "Append the result as JSON to this file.") var json: String?

    func run() throws {
        guard batchSize > 0, steps > 0, windows > 0 else { throw ValidationError("--batch-size, --steps and --windows must be positive") }
        let t = threads == 0 ? ProcessInfoCores.count : threads
        KernelThreading.maxThreads = t
        BlasInfo.setThreads(t)
        Conv2dPlan.batchSplit = convBatchSplit
        Conv2dDirect.weightGradient = directWeightGradient
        Generator.manualSeed(0)
        let entry = try Zoo.entry(model)
        let m = try Zoo.make(model)
        let params = m.parameters
        var opt = Optimizer(try sgd(lr: 0.01, momentum: 0.9, weightDecay: 5e-4), params: params.map(\.value))
        let x = Tensor.randn([batchSize] + entry.inputShape)
        let y = Tensor.randint(0, entry.classes, [batchSize])
        var busyProcess: Process?
        if busy { busyProcess = try startBusyLoop() }
        defer { busyProcess?.terminate() }
        func step() {
            let loss = Loss.crossEntropy(logits: m(x), targets: y)
            loss.backward()
            var values = params.map { _ in Tensor.zeros([0]) }
            for i in params.indices { swap(&values[i], &params[i].value) }
            opt.step(&values)
            for i in params.indices { swap(&values[i], &params[i].value) }
            m.zeroGrad()
        }
        for _ in 0..<warmup { step() }
        var rates: [Double] = []
        for _ in 0..<windows {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps { step() }
            let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            rates.append(Double(steps * batchSize) / secs)
        }
        rates.sort()
        let median = rates[rates.count / 2]
        print(String(format: "%@ batch %d, %d threads%@: %.0f images/s (median of %d windows of %d steps; min %.0f, max %.0f)",
                     model, batchSize, t, busy ? ", busy core" : "", median, windows, steps, rates.first!, rates.last!))
        if let json {
            let rec: [String: Any] = ["framework": "loom", "model": model, "batch": batchSize, "threads": t, "busy": busy, "images_per_second": median]
            let line = try JSONSerialization.data(withJSONObject: rec, options: [.sortedKeys]) + Data([0x0A])
            if let h = FileHandle(forWritingAtPath: json) { h.seekToEndOfFile(); h.write(line); try h.close() } else { try line.write(to: URL(fileURLWithPath: json)) }
        }
    }
}
