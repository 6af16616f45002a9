import Foundation
import NIOCore

/// HTTP/2 and socket settings of the service's connections (server and client side).
///
/// Defaults are sized for frame payloads (an 84x84x4 frame is 28 KiB, a response of 64 of
/// them 1.8 MiB): large HTTP/2 frames and flow-control windows, so a response does not
/// stall on WINDOW_UPDATE round trips, and socket reads of up to `maxReadBytes`.
public struct ReplayConnectionTuning: Sendable, Equatable {
    /// Largest HTTP/2 frame this side accepts (16 KiB ... 16 MiB - 1).
    public var maxFrameSize: Int
    /// HTTP/2 flow-control window per stream and per connection.
    public var targetWindowSize: Int
    /// Largest socket read (NIO's adaptive receive buffer grows up to this; NIO's default
    /// is 64 KiB).
    public var maxReadBytes: Int
    /// Whether gRPC may delay flushes (up to 100 µs) to batch writes.
    public var flushCoalescing: Bool

    public init(maxFrameSize: Int = 1 << 20, targetWindowSize: Int = 16 << 20, maxReadBytes: Int = 64 << 10,
                flushCoalescing: Bool = true) {
        self.maxFrameSize = maxFrameSize
        self.targetWindowSize = targetWindowSize
        self.maxReadBytes = maxReadBytes
        self.flushCoalescing = flushCoalescing
    }

    /// The defaults, overridden by `LOOM_REPLAY_TUNING` when set (for experiments:
    /// comma-separated `frame=N`, `window=N`, `read=N`, `coalesce=0|1`).
    public static var `default`: ReplayConnectionTuning {
        var t = ReplayConnectionTuning()
        guard let spec = ProcessInfo.processInfo.environment["LOOM_REPLAY_TUNING"] else { return t }
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, let v = Int(kv[1]) else { continue }
            switch kv[0] {
            case "frame": t.maxFrameSize = v
            case "window": t.targetWindowSize = v
            case "read": t.maxReadBytes = v
            case "coalesce": t.flushCoalescing = v != 0
            default: continue
            }
        }
        return t
    }

    /// Applies the socket settings to a new connection's channel.
    public func configure(_ channel: any Channel) -> EventLoopFuture<Void> {
        guard maxReadBytes != 64 << 10 else { return channel.eventLoop.makeSucceededVoidFuture() }
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: Swift.min(64 << 10, maxReadBytes),
                                                        maximum: maxReadBytes)
        return channel.setOption(ChannelOptions.recvAllocator, value: allocator)
    }
}
