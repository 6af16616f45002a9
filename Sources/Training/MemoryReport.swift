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

extension Trainer {
    /// Runs one real training step on `inputs` while recording memory, and reports it.
    /// (The step updates the model like any other.)
    public func memoryReportStep(inputs: Tensor, labels: Tensor) -> MemoryReport {
        model.train()
        let before = Memory.stats()
        Memory.resetPeak()
        let trace = ModuleTrace(naming: model)
        let (_, timeline) = Memory.recordTimeline {
            ModuleTrace.$current.withValue(trace) { trainStep(inputs: inputs, labels: labels) }
        }
        let after = Memory.stats()
        let k = Swift.min(microBatches, inputs.shape[0])
        let live = timeline.liveBytesByOwner(from: k == 1 ? "forward" : "forward 1/\(k)", to: k == 1 ? "backward" : "backward 1/\(k)")
        var rows: [MemoryReport.LayerRow] = []
        var seen: Set<String> = []
        var attributed = 0
        for (name, m) in model.namedModules() where m.namedChildren().isEmpty || live[name] != nil {
            guard !name.isEmpty, seen.insert(name).inserted else { continue }
            let b = live[name] ?? 0
            attributed += b
            rows.append(MemoryReport.LayerRow(name: name, type: String(describing: type(of: m)), savedBytes: b))
        }
        let total = live.values.reduce(0, +)
        return MemoryReport(batchSize: inputs.shape[0], microBatches: k, before: before, after: after, layers: rows,
                            unattributedBytes: total - attributed, timeline: timeline)
    }

    /// Measures the peak tensor memory of one step at `batchSize` on zero images, without
    /// changing the model: forward and backward run as configured (micro-batches,
    /// checkpointing), gradients are cleared, and parameters, buffers and the generator
    /// are restored. The optimizer's own allocations during `step` are not included
    /// (its state exists before training starts and is counted in the baseline).
    public func measureStepPeak(batchSize: Int) -> Int {
        let saved = model.stateDict()
        let rng = Generator.default.currentState
        defer {
            try! model.loadStateDict(Dictionary(uniqueKeysWithValues: saved))
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
            let logits = Memory.withTag(.activations) { model(xi) }
            let loss = Memory.withTag(.activations) { Loss.crossEntropy(logits: logits, targets: yi) }
            Memory.withTag(.workspace) { loss.backward() }
        }
        let peak = Memory.stats().peak
        model.zeroGrad()
        return peak
    }

    /// The planned peak of tensor memory for a step at the configured batch size, and the
    /// largest batch that fits `cap` by the same model.
    ///
    /// Peak memory is affine in the batch size (parameters, gradients and optimizer state
    /// are fixed; activations grow with the batch), so two measured steps at small
    /// batches give the line; batches up to 16 are measured directly. Conv scratch space
    /// is capped per call, so the line slightly overestimates large batches.
    public func planPeak(cap: Int? = nil) -> (peak: Int, largestBatchUnderCap: Int?) {
        let b = config.batchSize
        let k = microBatches
        let peak: Int
        var slope = 0.0, intercept = 0.0
        if b <= 16 {
            peak = measureStepPeak(batchSize: b)
            if cap != nil {
                let p1 = measureStepPeak(batchSize: Swift.max(1, b / 2))
                let b1 = Swift.max(1, b / 2)
                slope = b == b1 ? 0 : Double(peak - p1) / Double(b - b1)
                intercept = Double(peak) - slope * Double(b)
            }
        } else {
            let b1 = Swift.min(b, 8 * k), b2 = Swift.min(b, 16 * k)
            let p1 = measureStepPeak(batchSize: b1), p2 = measureStepPeak(batchSize: b2)
            slope = Double(p2 - p1) / Double(b2 - b1)
            intercept = Double(p1) - slope * Double(b1)
            peak = Int((intercept + slope * Double(b)).rounded(.up))
        }
        guard let cap else { return (peak, nil) }
        guard slope > 0 else { return (peak, peak <= cap ? Int.max : 0) }
        let largest = Int(((Double(cap) - intercept) / slope).rounded(.down))
        return (peak, Swift.max(largest, 0))
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
