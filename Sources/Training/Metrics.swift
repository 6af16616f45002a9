import Foundation
import TensorCore

/// Counts of (true class, predicted class): accuracy and a printable confusion matrix.
public struct ConfusionMatrix: Sendable, Equatable {
    public let classes: Int
    public private(set) var counts: [[Int]]

    public init(classes: Int) {
        self.classes = classes
        counts = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    /// Adds a batch: logits [B, classes] and labels [B].
    public mutating func add(logits: Tensor, labels: Tensor) {
        let pred = logits.argmax(dim: 1).scalars(as: Int64.self)
        let truth = labels.scalars(as: Int64.self)
        for (p, t) in zip(pred, truth) { counts[Int(t)][Int(p)] += 1 }
    }

    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int { (0..<classes).reduce(0) { $0 + counts[$1][$1] } }
    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    /// Rows are true classes, columns predictions; per-class recall at the right.
    public func table(names: [String]? = nil) -> String {
        let labels = names ?? (0..<classes).map(String.init)
        let w = max(6, (counts.flatMap { $0 }.max() ?? 0).description.count + 1)
        var lines = ["true \\ predicted".padding(toLength: 16, withPad: " ", startingAt: 0)
                     + (0..<classes).map { String(repeating: " ", count: w - "\($0)".count) + "\($0)" }.joined() + "  recall"]
        for t in 0..<classes {
            let name = "\(t) \(labels[t])".padding(toLength: 16, withPad: " ", startingAt: 0)
            let cells = counts[t].map { String(repeating: " ", count: max(0, w - "\($0)".count)) + "\($0)" }.joined()
            let n = counts[t].reduce(0, +)
            lines.append(name + cells + String(format: "  %5.1f%%", n == 0 ? 0 : 100 * Double(counts[t][t]) / Double(n)))
        }
        return lines.joined(separator: "\n")
    }
}

/// Appends JSON objects, one per line, flushing each (so a crash loses nothing written).
public final class JSONLWriter {
    let handle: FileHandle

    public init(path: String, append: Bool) throws {
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw ConfigError("cannot create \(path)") }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw ConfigError("cannot open \(path) for writing") }
        handle = h
        handle.seekToEndOfFile()
    }

    public func write(_ record: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        handle.write(data)
        handle.write(Data([0x0A]))
        try? handle.synchronize()
    }

    deinit { try? handle.close() }
}
