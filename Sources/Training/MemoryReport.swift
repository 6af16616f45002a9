import Foundation
import Layers
import Models
import TensorCore

/// What one training step did to memory, from the allocator's accounting: peak and
/// current bytes per tag, the activation bytes each layer's forward left for backward,
/// and the allocation timeline of the step.
public struct MemoryReport: Sendable {
    /// One layer's saved activations: bytes allocated while its forward ran (its output
    /// and what its backward keeps) that were still live when backward began.
    public struct LayerRow: Sendable {
        public let name: String
        public let type: String
        public let savedBytes: Int
    }

    public let batchSize: Int
    public let microBatches: Int
    /// Before the step.
    public let before: MemoryStats
    /// After the step; its peaks are the step's peaks (they were reset before it).
    public let after: MemoryStats
    /// Per layer, in forward order (first micro-batch only when there are several).
    public let layers: [LayerRow]
    /// Saved bytes not attributed to a layer (inputs, loss, glue between layers).
    public let unattributedBytes: Int
    public let timeline: MemoryTimeline

    /// Peak bytes of the whole step (all tags).
    public var peak: Int { after.peak }
    /// Sum of the per-layer saved bytes.
    public var savedActivationBytes: Int { layers.reduce(0) { $0 + $1.savedBytes } }

    /// The report as text: the per-tag table, the per-layer table and the timeline chart.
    public func text(chartRows: Int = 24) -> String {
        var lines: [String] = []
        lines.append("memory over one training step (batch \(batchSize)\(microBatches > 1 ? ", \(microBatches) micro-batches" : "")):")
        lines.append("  " + pad("tag", 16) + lpad("before", 12) + lpad("peak", 12) + lpad("after", 12))
        for tag in MemoryTag.allCases {
            lines.append("  " + pad(tag.rawValue, 16) + lpad(formatBytes(before.current(tag)), 12)
                         + lpad(formatBytes(after.peak(tag)), 12) + lpad(formatBytes(after.current(tag)), 12))
        }
        lines.append("  " + pad("total", 16) + lpad(formatBytes(before.current), 12) + lpad(formatBytes(after.peak), 12)
                     + lpad(formatBytes(after.current), 12))
        lines.append("")
        lines.append("activations saved for backward, per layer\(microBatches > 1 ? " (one micro-batch)" : ""):")
        for r in layers where r.savedBytes > 0 {
            lines.append("  " + pad(r.name, 24) + pad(r.type, 18) + lpad(formatBytes(r.savedBytes), 12))
        }
        lines.append("  " + pad("(inputs, loss, glue)", 42) + lpad(formatBytes(unattributedBytes), 12))
        lines.append("  " + pad("total", 42) + lpad(formatBytes(savedActivationBytes + unattributedBytes), 12))
        lines.append("")
        lines.append("timeline (each row: the largest point of its slice; stacked by tag):")
        lines.append(timeline.chart(rows: chartRows))
        return lines.joined(separator: "\n")
    }

    /// The report as JSON: tags, per-layer rows and the full timeline.
    public func json() -> Data {
        var tags: [String: [String: Int]] = [:]
        for t in MemoryTag.allCases {
            tags[t.rawValue] = ["before": before.current(t), "peak": after.peak(t), "after": after.current(t)]
        }
        let timelineObject = (try? JSONSerialization.jsonObject(with: timeline.json())) ?? [:]
        let doc: [String: Any] = [
            "batch_size": batchSize, "micro_batches": microBatches, "peak": after.peak, "tags": tags,
            "layers": layers.map { ["name": $0.name, "type": $0.type, "saved_bytes": $0.savedBytes] as [String: Any] },
            "unattributed_bytes": unattributedBytes, "timeline": timelineObject,
        ]
        return try! JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys])
    }
}

extension MemoryReport {
    /// Runs `step` (one training step of `model`: forward marked by `Memory.mark("forward")`,
    /// backward by `Memory.mark("backward")`, as `Trainer.trainStep` does) while recording
    /// the allocator's events, and builds the report. Peaks are reset before the step.
    /// With micro-batches the per-layer table covers the first ("forward 1/k").
    public static func record<R>(model: Module, batchSize: Int, microBatches: Int = 1,
                                 _ step: () throws -> R) rethrows -> (report: MemoryReport, result: R) {
        let before = Memory.stats()
        Memory.resetPeak()
        let trace = ModuleTrace(naming: model)
        let (result, timeline) = try Memory.recordTimeline {
            try ModuleTrace.$current.withValue(trace) { try step() }
        }
        let after = Memory.stats()
        let k = microBatches
        let live = timeline.liveBytesByOwner(from: k == 1 ? "forward" : "forward 1/\(k)", to: k == 1 ? "backward" : "backward 1/\(k)")
        var rows: [MemoryReport.LayerRow] = []
        var attributed = 0
        for (name, m) in model.namedModules() where !name.isEmpty && (m.namedChildren().isEmpty || live[name] != nil) {
            let bytes = live[name] ?? 0
            attributed += bytes
            rows.append(MemoryReport.LayerRow(name: name, type: String(describing: type(of: m)), savedBytes: bytes))
        }
        let total = live.values.reduce(0, +)
        return (MemoryReport(batchSize: batchSize, microBatches: k, before: before, after: after, layers: rows,
                             unattributedBytes: total - attributed, timeline: timeline), result)
    }
}

extension Trainer {
    /// Runs one real training step on `inputs` while recording memory, and reports it.
    /// (The step updates the model like any other.)
    public func memoryReportStep(inputs: Tensor, labels: Tensor) throws -> (report: MemoryReport, result: (loss: Double, correct: Int, count: Int)) {
        model.train()
        return try MemoryReport.record(model: model, batchSize: inputs.shape[0], microBatches: Swift.min(microBatches, inputs.shape[0])) {
            try trainStep(inputs: inputs, labels: labels)
        }
    }

    /// Measures the peak tensor memory of one step at `batchSize` on zero images, without
    /// changing the model: forward and backward run as configured (micro-batches,
    /// checkpointing), gradients are cleared, and parameters, buffers and the generator
    /// are restored. The optimizer's own allocations during `step` are not included
    /// (its state exists before training starts and is counted in the baseline).
    public func measureStepPeak(batchSize: Int) -> Int {
        // Parameters are not updated (no optimizer step); buffers and the generator are.
        let buffers = model.namedBuffers().map { ($0.1, $0.1.value) }
        let rng = Generator.default.currentState
        defer {
            for (b, v) in buffers { b.value = v }
            Generator.default.currentState = rng
        }
        model.zeroGrad()
        let x = Memory.withTag(.activations) { Tensor.zeros([batchSize, 1, 28, 28]) }
        let y = Tensor.zeros([batchSize], dtype: .int64)
        Memory.resetPeak()
        let k = Swift.min(microBatches, batchSize)
        var start = 0
        for i in 0..<k {
            let len = batchSize / k + (i < batchSize % k ? 1 : 0)
            let xi = x.narrowed(dim: 0, start: start, length: len), yi = y.narrowed(dim: 0, start: start, length: len)
            start += len
            let logits = Memory.withTag(.activations) { forwardLogits(xi) }
            let loss = Memory.withTag(.activations) { Loss.crossEntropy(logits: logits, targets: yi) }
            Memory.withTag(.workspace) { (lossScaler?.scale(loss) ?? loss).backward() }
        }
        let peak = Memory.stats().peak
        model.zeroGrad()
        return peak
    }

    /// The planned peak of tensor memory for a step at the configured batch size, and
    /// (with a cap) the largest batch whose measured step peak fits under it.
    ///
    /// Peak memory is close to affine in the batch size (parameters, gradients and
    /// optimizer state are fixed; activations grow with the batch), so steps measured at
    /// a quarter and a half of the batch give the line, and the plan never allocates more
    /// than half of what the real step needs. Batches up to 16 are measured directly.
    /// The largest batch under the cap is searched with measured steps (secant guesses
    /// from the line, then bisection; at most `maxProbes` steps), so it is a measurement,
    /// not an extrapolation.
    public func planPeak(cap: Int? = nil, maxProbes: Int = 8) -> (peak: Int, largestBatchUnderCap: Int?) {
        let b = config.batchSize
        var measured: [Int: Int] = [:]
        func peakAt(_ n: Int) -> Int {
            if let p = measured[n] { return p }
            let p = measureStepPeak(batchSize: n)
            measured[n] = p
            return p
        }
        let b1 = b <= 16 ? Swift.max(1, b / 2) : b / 4, b2 = b <= 16 ? b : b / 2
        let p1 = peakAt(b1), p2 = peakAt(b2)
        let slope = b2 > b1 ? Double(p2 - p1) / Double(b2 - b1) : 0
        let intercept = Double(p2) - slope * Double(b2)
        let peak = b <= 16 ? p2 : Int((intercept + slope * Double(b)).rounded(.up))
        guard let cap else { return (peak, nil) }
        guard slope > 0 else { return (peak, peak <= cap ? Int.max : 0) }
        // Bracket: lo fits (measured), hi does not (measured or by the line's bound).
        var lo = 0, hi = Int.max
        for (n, p) in measured { if p <= cap { lo = Swift.max(lo, n) } else { hi = Swift.min(hi, n) } }
        var guess = Int(((Double(cap) - intercept) / slope).rounded(.down))
        for _ in 0..<maxProbes {
            if hi != Int.max && hi - lo <= 1 { break }
            guess = Swift.max(lo + 1, hi == Int.max ? guess : Swift.min(guess, hi - 1))
            if guess < 1 { break }
            let p = peakAt(guess)
            if p <= cap { lo = guess } else { hi = guess }
            // Next guess: the line through the measured point, kept inside the bracket.
            let g = Int((Double(guess) + (Double(cap) - Double(p)) / slope).rounded(.down))
            guess = hi == Int.max ? Swift.max(g, lo + 1) : (g > lo && g < hi ? g : lo + (hi - lo) / 2)
        }
        return (peak, lo)
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
