import Foundation

/// One allocator event (or a marker) on a memory timeline.
public struct MemoryEvent: Sendable, Codable, Equatable {
    /// Position in the timeline (0, 1, 2, ...).
    public var index: Int
    /// Seconds since the timeline started.
    public var time: Double
    /// Bytes allocated (positive) or freed (negative); 0 for a marker.
    public var bytes: Int
    /// The tag charged (nil for a marker).
    public var tag: MemoryTag?
    /// Total live bytes after the event.
    public var current: Int
    /// Live bytes per tag after the event, in `MemoryTag.allCases` order.
    public var currentByTag: [Int]
    /// The marker's label (e.g. "backward"), nil for allocations.
    public var label: String?
    /// The block's serial number (an allocation and its free share it); 0 for a marker.
    public var id: Int
    /// `Memory.owner` when the block was allocated (e.g. "features.0"), nil if unset.
    public var owner: String?
}

/// The allocator's events over a stretch of work (e.g. one training step), with markers
/// naming its phases. Built by `Memory.recordTimeline(_:)`; export with `json()`, draw
/// with `chart(rows:width:)`.
public struct MemoryTimeline: Sendable, Codable {
    public var events: [MemoryEvent]

    /// Largest total live bytes on the timeline.
    public var peak: Int { events.map(\.current).max() ?? 0 }
    /// Largest live bytes of `tag`.
    public func peak(_ tag: MemoryTag) -> Int {
        let i = MemoryTag.allCases.firstIndex(of: tag)!
        return events.map { $0.currentByTag[i] }.max() ?? 0
    }

    /// Bytes allocated under each owner between the markers `from` and `to` (first
    /// occurrences) that are still live at `to`: e.g. from "forward" to "backward", the
    /// activations each layer's forward left for backward.
    public func liveBytesByOwner(from: String, to: String) -> [String: Int] {
        guard let a = events.firstIndex(where: { $0.label == from }),
              let b = events[a...].firstIndex(where: { $0.label == to }) else { return [:] }
        var live: [Int: (String, Int)] = [:]
        for e in events[a..<b] where e.label == nil {
            if e.bytes > 0 {
                live[e.id] = (e.owner ?? "(unattributed)", e.bytes)
            } else if e.bytes < 0 {
                live[e.id] = nil
            }
        }
        var out: [String: Int] = [:]
        for (_, (owner, bytes)) in live { out[owner, default: 0] += bytes }
        return out
    }

    /// The events as JSON: `{"tags": [...], "events": [{index, time, bytes, tag, current, current_by_tag, label}]}`.
    public func json() -> Data {
        struct Doc: Encodable {
            let tags: [String]
            let peak: Int
            let events: [MemoryEvent]
        }
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.sortedKeys]
        return try! enc.encode(Doc(tags: MemoryTag.allCases.map(\.rawValue), peak: peak, events: events))
    }

    /// A text chart: one row per slice of the timeline (its largest point), a bar per row
    /// stacked by tag (P parameters, G gradients, O optimizer state, A activations,
    /// W workspace, . other), scaled to the peak, with the phase marker that row is in.
    public func chart(rows: Int = 32, width: Int = 60) -> String {
        guard !events.isEmpty, peak > 0 else { return "(no allocations recorded)" }
        let symbols: [Character] = ["P", "G", "O", "A", "W", "."]
        let n = events.count
        let r = Swift.max(1, Swift.min(rows, n))
        var lines: [String] = []
        var phase = ""
        var start = 0
        for row in 0..<r {
            let end = (row + 1) * n / r
            guard end > start else { continue }
            var top = events[start]
            var newPhase: String?
            for e in events[start..<end] {
                if let l = e.label { newPhase = l }
                if e.current >= top.current { top = e }
            }
            if let p = newPhase { phase = p }
            var bar = ""
            var used = 0
            for (k, b) in top.currentByTag.enumerated() {
                let len = Int((Double(Swift.max(b, 0)) / Double(peak) * Double(width)).rounded())
                let take = Swift.min(len, width - used)
                if take > 0 { bar += String(repeating: symbols[k], count: take); used += take }
            }
            bar += String(repeating: " ", count: width - used)
            let label = formatBytes(top.current)
            lines.append("|\(bar)| \(label.padding(toLength: 11, withPad: " ", startingAt: 0)) \(phase)")
            start = end
        }
        lines.append("peak \(formatBytes(peak)); P parameters, G gradients, O optimizer state, A activations, W workspace, . other")
        return lines.joined(separator: "\n")
    }
}

extension Memory.State {
    mutating func record(_ bytes: Int, tag: MemoryTag?, label: String?, id: Int = 0, owner: String? = nil) {
        let byTag = MemoryTag.allCases.map { currentByTag[$0] ?? 0 }
        let t = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        timeline!.append(MemoryEvent(index: timeline!.count, time: t, bytes: bytes, tag: tag, current: current,
                                     currentByTag: byTag, label: label, id: id, owner: owner))
    }
}

extension Memory {
    /// Runs `body` while recording every allocation and free (and `mark`s) into a timeline.
    /// Timelines do not nest; recording costs one array append per allocation.
    public static func recordTimeline<R>(_ body: () throws -> R) rethrows -> (result: R, timeline: MemoryTimeline) {
        state.withLock { s in
            s.timeline = []
            s.record(0, tag: nil, label: "start")
        }
        let result: R
        do {
            result = try body()
        } catch {
            state.withLock { $0.timeline = nil }
            throw error
        }
        var events = state.withLock { s -> [MemoryEvent] in
            let e = s.timeline ?? []
            s.timeline = nil
            return e
        }
        if let t0 = events.first?.time { for i in events.indices { events[i].time -= t0 } }
        return (result, MemoryTimeline(events: events))
    }

    /// Adds a marker (a phase name such as "forward" or "backward") to the timeline being
    /// recorded; does nothing otherwise.
    public static func mark(_ label: String) {
        state.withLock { s in
            if s.timeline != nil { s.record(0, tag: nil, label: label) }
        }
    }
}
