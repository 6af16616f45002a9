import Foundation

/// A per-epoch progress display: a live bar on a terminal, plain lines otherwise.
///
/// On a terminal the bar is redrawn at most 10 times a second with `\r`; when stdout is a
/// file or pipe, a line is printed every 10% of the epoch, so logs stay readable.
public final class ProgressBar {
    let total: Int
    let title: String
    let isTTY: Bool
    let start = Date()
    var lastDraw = Date.distantPast
    var lastDecile = -1

    public init(title: String, total: Int, isTTY: Bool = isatty(STDOUT_FILENO) != 0) {
        self.title = title
        self.total = max(total, 1)
        self.isTTY = isTTY
    }

    /// Reports `done` of `total` steps and the running metrics.
    public func update(done: Int, loss: Double, accuracy: Double, imagesPerSecond: Double) {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let stats = String(format: "loss %.4f  acc %5.2f%%  %6.0f img/s  ETA %@", loss, accuracy * 100, imagesPerSecond, formatDuration(eta))
        if isTTY {
            if Date().timeIntervalSince(lastDraw) < 0.1 && done < total { return }
            lastDraw = Date()
            let width = 30
            let filled = width * done / total
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            FileHandle.standardOutput.write("\r\(title) [\(bar)] \(done)/\(total)  \(stats)\u{1B}[K".data(using: .utf8)!)
        } else {
            let decile = 10 * done / total
            if decile > lastDecile && (decile < 10 || done == total) {
                lastDecile = decile
                print("\(title) \(done)/\(total)  \(stats)")
                fflush(nil)  // reach a log file or pipe now, not in 4 KiB blocks
            }
        }
    }

    /// Ends the bar's line.
    public func finish() {
        if isTTY { print("") }
    }
}

/// 75 -> "1:15", 3725 -> "1:02:05".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "--:--" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}
