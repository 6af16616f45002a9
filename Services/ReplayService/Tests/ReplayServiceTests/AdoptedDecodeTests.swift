import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
@testable import ReplayClient
@testable import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// `SampleWire.decode` with the NIO transport's bytes: columns over 4 KiB are tensors over
/// the message bytes (`Tensor(adopting:)`), equal bit for bit to the copied ones, valid
/// after the caller's bytes are gone; other byte types, smaller columns, misaligned
/// columns and `adoptMessageBytes: false` copy.
final class AdoptedDecodeTests: XCTestCase {
    /// A frame item (uint8 [steps, 84, 84, 4], over the limit) with a small int32 column and
    /// a float32 column of `floats` values per step.
    private func frameSample(_ key: UInt64, steps: Int = 2, floats: Int = 1500) throws -> ReplaySample {
        let n = steps * 84 * 84 * 4
        let frames = try Tensor((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(key)) }, shape: [steps, 84, 84, 4])
        let actions = try Tensor((0..<steps).map { Int32(key) * 10 + Int32($0) }, shape: [steps])
        let values = try Tensor((0..<(steps * floats)).map { Float(key) + Float($0) * 0.25 }, shape: [steps, floats])
        let chunk = try Chunk(key: key, columns: [frames, actions, values])
        return ReplaySample(item: ReplayItem(key: key, table: "t", priority: 1, chunks: [chunk]),
                            info: SampleInfo(key: key, probability: 0.5, tableSize: 3, priority: 1, timesSampled: 1))
    }

    private func assertSameSamples(_ decoded: [ReplaySample], _ samples: [ReplaySample], _ what: String,
                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(decoded.count, samples.count, what, file: file, line: line)
        for (d, s) in zip(decoded, samples) {
            XCTAssertEqual(d.info, s.info, what, file: file, line: line)
            XCTAssertEqual(d.item.columnCount, s.item.columnCount, what, file: file, line: line)
            for c in 0..<s.item.columnCount {
                XCTAssertEqual(d.item.column(c).shape, s.item.column(c).shape, "\(what) column \(c)", file: file, line: line)
                XCTAssertEqual(d.item.column(c).dtype, s.item.column(c).dtype, "\(what) column \(c)", file: file, line: line)
                XCTAssertEqual(bytes(d.item.column(c)), bytes(s.item.column(c)), "\(what) column \(c)", file: file, line: line)
            }
        }
    }

    func testTransportBytesAreAdoptedOtherBytesCopied() throws {
        for count in [1, 3] {
            let samples = try (1...count).map { try frameSample(UInt64($0)) }
            let nio: GRPCNIOTransportBytes = SampleWire.encode(samples)
            let array: [UInt8] = SampleWire.encode(samples)
            let adopted = try SampleWire.decode(nio, table: "t")
            let copiedNIO = try SampleWire.decode(nio, table: "t", adoptMessageBytes: false)
            let copiedArray = try SampleWire.decode(array, table: "t")
            assertSameSamples(adopted, samples, "adopted, \(count) items")
            assertSameSamples(copiedNIO, samples, "NIO bytes copied, \(count) items")
            assertSameSamples(copiedArray, samples, "array copied, \(count) items")

            let message = nio.withUnsafeBytes { UInt(bitPattern: $0.baseAddress!)..<(UInt(bitPattern: $0.baseAddress!) + UInt($0.count)) }
            for d in adopted {
                let columns = d.item.chunks[0].columns
                // Frames: over the message's bytes. Actions (8 bytes): copied.
                XCTAssertTrue(columns[0].storageBlock.isAdopted, "\(count) items")
                XCTAssertTrue(message.contains(UInt(bitPattern: columns[0].storageBlock.pointer)))
                XCTAssertFalse(columns[1].storageBlock.isAdopted)
                XCTAssertFalse(message.contains(UInt(bitPattern: columns[1].storageBlock.pointer)))
                // Float32 (12000 bytes): adopted exactly when its bytes are 4-byte aligned.
                XCTAssertEqual(columns[2].storageBlock.isAdopted,
                               message.contains(UInt(bitPattern: columns[2].storageBlock.pointer)))
            }
            for d in copiedNIO + copiedArray {
                XCTAssertFalse(d.item.chunks[0].columns.contains { $0.storageBlock.isAdopted })
            }
        }
    }

    /// The adopted columns read the message bytes after the caller's copy is gone and freed
    /// memory of the same size has been reused (the decoded tensors keep the buffer alive).
    func testAdoptedColumnsOutliveTheCallersBytes() throws {
        let samples = try (1...2).map { try frameSample(UInt64($0)) }
        func decodeFromTemporary() throws -> [ReplaySample] {
            let nio: GRPCNIOTransportBytes = SampleWire.encode(samples)
            return try SampleWire.decode(nio, table: "t")
        }
        let decoded = try decodeFromTemporary()
        XCTAssertTrue(decoded.allSatisfy { $0.item.chunks[0].columns[0].storageBlock.isAdopted })
        // Same-sized buffers with other contents (would land in freed memory).
        let others = try (7...8).map { try frameSample(UInt64($0)) }
        var keep: [GRPCNIOTransportBytes] = []
        for _ in 0..<4 { keep.append(SampleWire.encode(others)) }
        assertSameSamples(decoded, samples, "after the message's bytes were dropped")
        XCTAssertEqual(keep.count, 4)
    }

    /// A float32 column over the limit whose bytes start at every offset modulo 4 (the key's
    /// varint takes 1-4 bytes before it): adopted where aligned, copied elsewhere, equal
    /// values either way.
    func testMisalignedColumnsAreCopied() throws {
        var adopted = 0, copied = 0
        for key: UInt64 in [1, 1 << 7, 1 << 14, 1 << 21] {
            let values = try Tensor((0..<2000).map { Float($0) * 0.5 - 7 }, shape: [1, 2000])
            let sample = ReplaySample(item: ReplayItem(key: key, table: "t", priority: 1,
                                                       chunks: [try Chunk(key: key, columns: [values])]),
                                      info: SampleInfo(key: key, probability: 1, tableSize: 1, priority: 1, timesSampled: 1))
            let nio: GRPCNIOTransportBytes = SampleWire.encode([sample])
            let decoded = try SampleWire.decode(nio, table: "t")
            assertSameSamples(decoded, [sample], "key \(key)")
            // Where the column's bytes start in the message.
            let raw = bytes(values)
            let start: UnsafeRawPointer = nio.withUnsafeBytes { buffer in
                let all = Array(buffer)
                let offset = (0...(all.count - raw.count)).first { all[$0..<($0 + raw.count)].elementsEqual(raw) }!
                return buffer.baseAddress! + offset
            }
            let column = decoded[0].item.chunks[0].columns[0]
            XCTAssertEqual(column.storageBlock.isAdopted, Tensor.canAdopt(start, dtype: .float32), "key \(key)")
            if column.storageBlock.isAdopted {
                XCTAssertEqual(UnsafeRawPointer(column.storageBlock.pointer), start)
                adopted += 1
            } else {
                copied += 1
            }
        }
        XCTAssertGreaterThan(adopted, 0)
        XCTAssertGreaterThan(copied, 0)
    }

    /// The server's side of inserts: a `TensorData` over the limit becomes a tensor over the
    /// decoded message's `Data` (bit for bit the same, valid after the message is gone);
    /// small or misaligned data is copied.
    func testInsertedColumnsAdoptTheDecodedData() throws {
        let frame = try frameSample(3)
        func decoded(_ t: Tensor) throws -> Tensor {
            let wire = Loom_Replay_TensorData(t)
            // Round trip through serialized bytes, as the server receives it.
            let bytes: [UInt8] = try wire.serializedBytes()
            return try Loom_Replay_TensorData(serializedBytes: bytes).tensor("test column")
        }
        for (c, expectAdopted) in [(0, true), (1, false), (2, true)] {
            let original = frame.item.column(c)
            let t = try decoded(original)
            XCTAssertEqual(t.storageBlock.isAdopted, expectAdopted, "column \(c)")
            XCTAssertEqual(t.shape, original.shape)
            XCTAssertEqual(bytes(t), bytes(original), "column \(c)")
        }
        // A slice of a Data one byte into its storage: float32 bytes misaligned, copied.
        let values = frame.item.column(2)
        var wire = Loom_Replay_TensorData(values)
        wire.data = (Data([0xEE]) + wire.data)[1...]
        let misaligned = try wire.tensor("sliced column")
        XCTAssertFalse(misaligned.storageBlock.isAdopted)
        XCTAssertEqual(bytes(misaligned), bytes(values))
        let frames = frame.item.column(0)
        var frameWire = Loom_Replay_TensorData(frames)
        frameWire.data = (Data([0xEE]) + frameWire.data)[1...]
        let slicedFrames = try frameWire.tensor("sliced frames")
        XCTAssertTrue(slicedFrames.storageBlock.isAdopted, "uint8 adopts at any address")
        frameWire = Loom_Replay_TensorData()
        XCTAssertEqual(bytes(slicedFrames), bytes(frames), "the tensor keeps the Data alive")
    }

    /// Through the real transport: sampled frames are adopted (the NIO transport hands the
    /// deserializer `GRPCNIOTransportBytes`), or copied with `adoptMessageBytes: false`; the
    /// same bytes either way, also on a connection made by `connect()`.
    func testSampledFramesOverTheTransport() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t"), try uniformTable("w")])
        let sample = try frameSample(5)
        try replay.insert(ReplayItem(key: 5, table: "t", priority: 1, chunks: sample.item.chunks))
        let service = try await RunningService(replay: replay)

        // Inserted over the wire: the server's chunk columns adopt the decoded Data.
        let writerClient = try service.client()
        let writer = try TrajectoryWriter(client: writerClient, chunkLength: 2, maxSequenceLength: 2)
        for step in 0..<2 { try writer.append((0..<3).map { sample.item.column($0).narrowed(dim: 0, start: step, length: 1).squeezed(dim: 0) }) }
        _ = try writer.createItem(table: "w", priority: 1, numSteps: 2)
        let flushed = try await writer.flush(timeout: .seconds(5))
        XCTAssertEqual(flushed, 1)
        let stored = try replay.sample(table: "w")[0].item
        XCTAssertTrue(stored.chunks[0].columns[0].storageBlock.isAdopted)
        XCTAssertFalse(stored.chunks[0].columns[1].storageBlock.isAdopted)
        for col in 0..<3 { XCTAssertEqual(bytes(stored.column(col)), bytes(sample.item.column(col)), "inserted column \(col)") }
        await writerClient.close()
        for adopt in [true, false] {
            let client = try ReplayClient(port: service.port, adoptMessageBytes: adopt)
            XCTAssertEqual(client.adoptsMessageBytes, adopt)
            let other = try client.connect()
            XCTAssertEqual(other.adoptsMessageBytes, adopt)
            for c in [client, other] {
                let got = try await c.sample(table: "t", count: 2, timeout: .seconds(5))
                XCTAssertEqual(got.count, 2)
                for s in got {
                    XCTAssertEqual(s.item.chunks[0].columns[0].storageBlock.isAdopted, adopt)
                    XCTAssertFalse(s.item.chunks[0].columns[1].storageBlock.isAdopted)
                    for col in 0..<3 {
                        XCTAssertEqual(bytes(s.item.column(col)), bytes(sample.item.column(col)), "adopt \(adopt) column \(col)")
                    }
                }
            }
            await other.close()
            await client.close()
        }
        try await service.stop()
    }
}
