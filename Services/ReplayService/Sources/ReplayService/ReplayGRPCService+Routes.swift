import GRPCCore
import GRPCProtobuf
import ReplayServiceProto
import ReplayStorage

extension ReplayGRPCService {
    /// The service's routes: the generated ones for every RPC but Sample and SampleStream,
    /// whose responses are written by `SampleBatchSerializer` straight from the sampled
    /// items' chunk storage (same wire format as `loom.replay.SampleResponse`; see
    /// `SampleWire`), and Insert and InsertStream, whose requests on the framed transport keep
    /// large column bytes in the received buffer (`InsertWire`).
    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        typealias M = Loom_Replay_ReplayService.Method
        router.registerHandler(
            forMethod: M.Insert.descriptor,
            deserializer: InsertRequestDeserializer(),
            serializer: ProtobufSerializer<Loom_Replay_InsertResponse>(),
            handler: { request, context in
                let deadline = callDeadline(request.metadata)
                return StreamingServerResponse(single: ServerResponse(message: try await self.insert(request: request.messages, deadline: deadline)))
            })
        router.registerHandler(
            forMethod: M.Sample.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_SampleRequest>(),
            serializer: SampleBatchSerializer(),
            handler: { request, context in
                let message = try await ServerRequest(stream: request).message
                let deadline = callDeadline(request.metadata)
                return StreamingServerResponse<[ReplaySample]>(metadata: [:], producer: { writer in
                    try await self.sampleBatches(request: message, context: context, deadline: deadline) { try await writer.write($0) }
                    return [:]
                })
            })
        router.registerHandler(
            forMethod: M.SampleStream.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_SampleRequest>(),
            serializer: SampleBatchSerializer(),
            handler: { request, context in
                let deadline = callDeadline(request.metadata)
                return StreamingServerResponse<[ReplaySample]>(metadata: [:], producer: { writer in
                    try await self.sampleStream(requests: request.messages, context: context, deadline: deadline) {
                        try await writer.write($0)
                    }
                    return [:]
                })
            })
        router.registerHandler(
            forMethod: M.InsertStream.descriptor,
            deserializer: InsertRequestDeserializer(),
            serializer: ProtobufSerializer<Loom_Replay_InsertConfirmation>(),
            handler: { request, context in
                let deadline = callDeadline(request.metadata)
                return StreamingServerResponse<Loom_Replay_InsertConfirmation>(metadata: [:], producer: { writer in
                    try await self.insertStream(requests: request.messages, context: context, deadline: deadline) {
                        try await writer.write($0)
                    }
                    return [:]
                })
            })
        router.registerHandler(
            forMethod: M.MutatePriorities.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_MutatePrioritiesRequest>(),
            serializer: ProtobufSerializer<Loom_Replay_MutatePrioritiesResponse>(),
            handler: { request, context in try await self.mutatePriorities(request: request, context: context) })
        router.registerHandler(
            forMethod: M.Reset.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_ResetRequest>(),
            serializer: ProtobufSerializer<Loom_Replay_ResetResponse>(),
            handler: { request, context in try await self.reset(request: request, context: context) })
        router.registerHandler(
            forMethod: M.ServerInfo.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_ServerInfoRequest>(),
            serializer: ProtobufSerializer<Loom_Replay_ServerInfoResponse>(),
            handler: { request, context in try await self.serverInfo(request: request, context: context) })
        router.registerHandler(
            forMethod: M.Checkpoint.descriptor,
            deserializer: ProtobufDeserializer<Loom_Replay_CheckpointRequest>(),
            serializer: ProtobufSerializer<Loom_Replay_CheckpointResponse>(),
            handler: { request, context in try await self.checkpoint(request: request, context: context) })
    }
}
