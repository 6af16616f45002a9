import ArgumentParser
import Dispatch
import Foundation
import Layers
import Models
import Optimizers
import TensorCore
import TensorKernels
import Training

/// `loom checkpoint-bench`: activation memory and step time of a deep sequential CNN with
/// no checkpointing, Chen's sqrt(n) segments and a memory budget, at several depths.
struct CheckpointBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint-bench",
        abstract: "Peak activation memory and step time of DeepConvNet for none / sqrt / budget checkpointing at several depths.",
        discussion: """
        Each row trains DeepConvNet(depth) on random 28x28 inputs: one warm-up step, then --steps measured steps \
        (median time). 'act peak' is the peak of the activations tag above its level before the step (what the \
        forward pass keeps for backward, plus recomputed segments); 'step peak' is the peak of all tensor memory \
        above the level before the step. The budget is --budget-factor times the sqrt plan's planned peak: the \
        least-recompute plan under it trades some of sqrt's memory saving for less recomputation.
        Example: loom checkpoint-bench --depths 16,32,64,128 --batch-size 32
        """)
    @Option(help: "Comma-separated depths (conv-BN-ReLU blocks).") var depths: String = "16,32,64,128"
    @Option(help: "Batch size.") var batchSize: Int = 32
    @Option(help: "Channels per block.") var channels: Int = 16
    @Option(help: "Measured steps per row (median time).") var steps: Int = 3
    @Option(help: "Budget as a multiple of the sqrt plan's planned activation peak.") var budgetFactor: Double = 2
    @Option(help: "Threads (0: all cores).") var threads: Int = 0
    @Option(help: "Write the rows as JSON lines to this file.") var json: String?

    struct Row {
        var depth: Int, policy: String, plan: String, planned: Int, actPeak: Int, stepPeak: Int, seconds: Double
        var forwardSeconds: Double, backwardSeconds: Double
    }

    /// One policy's model, optimizer and data, and its measured steps.
    final class Runner {
        let name: String
        let model: DeepConvNet
        let params: [Parameter]
        var opt: Optimizer
        let x: Tensor, y: Tensor
        var policy = "none", planText = "-", planned = 0
        var results: [(act: Int, total: Int, secs: Double, fwd: Double, bwd: Double)] = []

        init(name: String, model: DeepConvNet, x: Tensor, y: Tensor) throws {
            self.name = name
            self.model = model
            self.params = model.parameters
            self.opt = Optimizer(try sgd(lr: 0.01, momentum: 0.9), params: params.map(\.value))
            self.x = x
            self.y = y
        }

        var medianSeconds: Double { median(results.map(\.secs)) }
        var medianForward: Double { median(results.map(\.fwd)) }
        var medianBackward: Double { median(results.map(\.bwd)) }
        private func median(_ v: [Double]) -> Double { let t = v.sorted(); return t[t.count / 2] }

        /// One training step: (activation peak, step peak above the level before, seconds of
        /// the step, of its forward pass and of its backward pass — recomputation included).
        func step() -> (act: Int, total: Int, secs: Double, fwd: Double, bwd: Double) {
            let before = Memory.stats()
            Memory.resetPeak()
            let t0 = DispatchTime.now().uptimeNanoseconds
            let loss = Memory.withTag(.activations) { Loss.crossEntropy(logits: model(x), targets: y) }
            let t1 = DispatchTime.now().uptimeNanoseconds
            Memory.withTag(.workspace) { loss.backward() }
            let t2 = DispatchTime.now().uptimeNanoseconds
            var values = params.map { _ in Tensor.zeros([0]) }
            for i in params.indices { swap(&values[i], &params[i].value) }
            opt.step(&values)
            for i in params.indices { swap(&values[i], &params[i].value) }
            model.zeroGrad()
            let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let after = Memory.stats()
            return (after.peak(.activations) - before.current(.activations), after.peak - before.current, secs,
                    Double(t1 - t0) / 1e9, Double(t2 - t1) / 1e9)
        }
    }

    func run() throws {
        let ds = depths.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ds.isEmpty, ds.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--depths '\(depths)': expected comma-separated positive integers") }
        guard batchSize >= 1, steps >= 1, channels >= 1 else { throw ValidationError("--batch-size, --steps and --channels must be positive") }
        guard budgetFactor >= 1 else { throw ValidationError("--budget-factor \(budgetFactor): expected at least 1") }
        let t = threads == 0 ? ProcessInfoCores.count : threads
        KernelThreading.maxThreads = t
        BlasInfo.setThreads(t)
        var rows: [Row] = []
        print("DeepConvNet, batch \(batchSize), \(channels) channels, 28x28, \(t) threads; median of \(steps) steps")
        print("depth  policy      act peak   step peak     planned   step ms   fwd ms   bwd ms   x time  mem ÷   plan")
        for depth in ds {
            // One model per policy; their steps are interleaved (none, sqrt, budget, none, ...)
            // so that a slow stretch of a shared machine hits every policy alike.
            var runners: [Runner] = []
            var sqrtPlanned = 0
            for policyName in ["none", "sqrt", "budget"] {
                Generator.manualSeed(0)
                let model = DeepConvNet(depth: depth, channels: channels)
                let x = Memory.withTag(.activations) { Tensor.randn([batchSize, 1, 28, 28]) }
                let y = Tensor.randint(0, 10, [batchSize])
                let r = try Runner(name: policyName, model: model, x: x, y: y)
                switch policyName {
                case "none":
                    let probe = try Checkpointing.apply(.sqrt, to: model, input: x)  // measure costs only
                    r.planned = probe.first.map { $0.peakWithout } ?? 0
                    sqrtPlanned = probe.first.map { $0.plannedPeak } ?? 0
                    _ = try Checkpointing.apply(.none, to: model, input: x)
                default:
                    let policy: CheckpointPolicy = policyName == "sqrt" ? .sqrt : .budget(bytes: Swift.max(1, Int(Double(sqrtPlanned) * budgetFactor)))
                    r.policy = policy.description
                    let p = try Checkpointing.apply(policy, to: model, input: x)
                    r.planned = p.first?.plannedPeak ?? 0
                    r.planText = p.first.map { "\($0.plan.recomputedSegments) recomputed / \($0.plan.segments.count) segments" } ?? "-"
                }
                _ = r.step()  // warm-up
                runners.append(r)
            }
            for _ in 0..<steps { for r in runners { r.results.append(r.step()) } }
            let base = runners[0]
            for r in runners {
                let secs = r.medianSeconds, act = r.results.map(\.act).max()!, total = r.results.map(\.total).max()!
                rows.append(Row(depth: depth, policy: r.policy, plan: r.planText, planned: r.planned, actPeak: act, stepPeak: total, seconds: secs,
                                forwardSeconds: r.medianForward, backwardSeconds: r.medianBackward))
                let baseAct = base.results.map(\.act).max()!
                func l(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
                print(l("\(depth)", 5) + "  " + r.name.padding(toLength: 8, withPad: " ", startingAt: 0)
                      + l(formatBytes(act), 12) + l(formatBytes(total), 12) + l(formatBytes(r.planned), 12)
                      + String(format: "%10.1f %8.1f %8.1f %8.2f %7.2f   ", secs * 1000, r.medianForward * 1000, r.medianBackward * 1000,
                               secs / base.medianSeconds, Double(baseAct) / Double(Swift.max(act, 1)))
                      + r.planText)
            }
            fflush(nil)
        }
        // Growth of the activation peak with depth: the slope of log(peak) against log(depth).
        if ds.count >= 2 {
            for policy in ["none", "sqrt"] {
                let pts = rows.filter { $0.policy == policy }.map { (log(Double($0.depth)), log(Double($0.actPeak))) }
                let mx = pts.map(\.0).reduce(0, +) / Double(pts.count), my = pts.map(\.1).reduce(0, +) / Double(pts.count)
                let slope = pts.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) } / pts.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
                print(String(format: "activation peak grows as depth^%.2f with %@ (1 = linear, 0.5 = sqrt)", slope, policy as NSString))
            }
        }
        if let json {
            var out = Data()
            for r in rows {
                let rec: [String: Any] = ["depth": r.depth, "policy": r.policy, "plan": r.plan, "planned_bytes": r.planned,
                                          "activation_peak_bytes": r.actPeak, "step_peak_bytes": r.stepPeak, "step_seconds": r.seconds,
                                          "forward_seconds": r.forwardSeconds, "backward_seconds": r.backwardSeconds,
                                          "batch": batchSize, "channels": channels]
                out += try JSONSerialization.data(withJSONObject: rec, options: [.sortedKeys]) + Data([0x0A])
            }
            try out.write(to: URL(fileURLWithPath: json))
        }
    }
}

/// `loom memory`: the memory report of one training step of a zoo model, the planned peak
/// and the largest batch under a cap, for a given low-memory configuration.
struct MemoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "memory",
        abstract: "Report memory of one training step (per tag, per layer, timeline) and the largest batch under a cap.",
        discussion: """
        Runs one real training step of the model on Fashion-MNIST images with the given options and prints the \
        allocator's accounting. With --memory-cap it also plans the peak at --batch-size and finds the largest batch \
        under the cap, then verifies it by measuring a step at that batch.
        Example: loom memory --model convnet-bn --batch-size 128 --checkpoint sqrt --micro-batches 4 --memory-cap 64M
        """)
    @Option(help: "Zoo model (28x28 inputs).") var model: String = "convnet-bn"
    @Option(help: "Batch size.") var batchSize: Int = 128
    @Option(help: "Micro-batches per step.") var microBatches: Int = 1
    @Option(help: "Gradient checkpointing: none, sqrt or budget:BYTES.") var checkpoint: String = "none"
    @Option(help: "Compute precision: fp32, fp16 or bf16.") var precision: String = "fp32"
    @Flag(help: "With fp16/bf16: L1/L-inf batch norm in half.") var halfBatchNorm = false
    @Option(help: "BatchNorm kind: l2, l1 or linf.") var norm: String = "l2"
    @Option(help: "Workspace budget of one convolution call (K/M/G suffixes; default 4M).") var workspaceLimit: String?
    @Option(help: "Tensor-memory cap in bytes (K/M/G suffixes) for planning.") var memoryCap: String?
    @Option(help: "Write the report (with the full timeline) as JSON to this file.") var json: String?
    @Option(help: "Rows of the timeline chart.") var chartRows: Int = 24
    @Option(help: "Directory with the Fashion-MNIST IDX files.") var dataDir: String = "/usr/share/datasets/fashion-mnist"

    func run() throws {
        do {
            var c = TrainConfig()
            c.model = model; c.batchSize = batchSize; c.dataDir = dataDir
            c.microBatches = microBatches == 1 ? nil : microBatches
            c.checkpointing = checkpoint == "none" ? nil : checkpoint
            c.precision = precision == "fp32" ? nil : precision
            c.halfBatchNorm = halfBatchNorm ? true : nil
            c.norm = norm
            if let w = workspaceLimit {
                guard let b = parseByteCount(w), b > 0 else { throw ValidationError("--workspace-limit '\(w)': expected a byte count such as 1M") }
                c.workspaceLimit = b
            }
            c.trainLimit = Swift.max(batchSize, 1)
            c.testLimit = 500
            c.prefetch = 0
            var cap: Int?
            if let m = memoryCap {
                guard let b = parseByteCount(m), b > 0 else { throw ValidationError("--memory-cap '\(m)': expected a byte count such as 64M") }
                cap = b
            }
            let trainer = try Trainer(config: c)
            for p in trainer.checkpointPlans {
                print("checkpoint plan for \(p.name.isEmpty ? "model" : p.name): \(p.plan) (planned activations \(formatBytes(p.plannedPeak)), without \(formatBytes(p.peakWithout)))")
            }
            let batch = trainer.train.epoch(0).first(where: { _ in true })!
            let report = try trainer.memoryReportStep(inputs: batch.inputs, labels: batch.labels).report
            print(report.text(chartRows: chartRows))
            if let json { try report.json().write(to: URL(fileURLWithPath: json)); print("wrote \(json)") }
            if let cap {
                let plan = trainer.planPeak(cap: cap)
                print("planned peak at batch \(batchSize): \(formatBytes(plan.peak)) (measured above: \(formatBytes(report.peak))); cap \(formatBytes(cap))")
                let largest = plan.largestBatchUnderCap.map { $0 == Int.max ? "any" : "\($0)" } ?? "?"
                print("largest batch whose measured step peak fits under the cap: \(largest)")
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            throw CLIError(error)
        }
    }
}
