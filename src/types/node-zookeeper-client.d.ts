/**
 * Minimal typings for node-zookeeper-client 1.1.x (the package ships none): only what
 * src/registry uses. Longs (zxids, session ids, ephemeralOwner) are 8-byte Buffers.
 */
declare module "node-zookeeper-client" {
  import type { EventEmitter } from "node:events";
  import type { Socket } from "node:net";

  namespace zookeeper {
    /** Node metadata as returned by the server. */
    interface Stat {
      czxid: Buffer;
      mzxid: Buffer;
      ctime: Buffer;
      mtime: Buffer;
      version: number;
      cversion: number;
      aversion: number;
      /** Session id owning an ephemeral node; all zero bytes for a persistent node. */
      ephemeralOwner: Buffer;
      dataLength: number;
      numChildren: number;
      pzxid: Buffer;
    }

    interface ClientState {
      readonly name: string;
      readonly code: number;
      getName(): string;
      getCode(): number;
    }

    /** A watcher notification (one-shot). */
    interface WatcherEvent {
      readonly type: number;
      readonly name: string;
      readonly path: string;
      getType(): number;
      getName(): string;
      getPath(): string;
    }

    type Watcher = (event: WatcherEvent) => void;

    /** Error passed to callbacks; `code` is one of `Exception`'s numeric constants. */
    interface ZkException extends Error {
      readonly code: number;
      readonly path?: string;
      getCode(): number;
      getName(): string;
      getPath(): string | undefined;
    }

    interface ClientOptions {
      sessionTimeout?: number;
      spinDelay?: number;
      retries?: number;
      sessionId?: Buffer;
      sessionPassword?: Buffer;
    }

    /**
     * Internal connection manager (not public API): what zk-connect.ts reads to spot a stalled
     * handshake and overrides to make an abandoned client inert.
     */
    interface ConnectionManagerInternals {
      socket?: Socket;
      state: number;
      packetQueue: { shift(): { callback?: (error: ZkException) => void } | undefined };
      setState(state: number): void;
      connect(): void;
      onSocketConnected(): void;
      onSocketData(buffer: Buffer): void;
      cleanupPendingQueue(errorCode: number): void;
    }

    interface Client extends EventEmitter {
      connect(): void;
      close(): void;
      getState(): ClientState;
      getSessionId(): Buffer;
      getSessionTimeout(): number;
      /** Not part of the public API (used to unstick a handshake the server never answered). */
      readonly connectionManager: ConnectionManagerInternals;

      create(
        path: string,
        data: Buffer | null,
        mode: number,
        callback: (error: ZkException | null, path: string) => void,
      ): void;
      mkdirp(path: string, callback: (error: ZkException | null, path: string) => void): void;
      remove(path: string, version: number, callback: (error: ZkException | null) => void): void;
      setData(
        path: string,
        data: Buffer,
        version: number,
        callback: (error: ZkException | null, stat: Stat) => void,
      ): void;
      getData(
        path: string,
        callback: (error: ZkException | null, data: Buffer | null | undefined, stat: Stat) => void,
      ): void;
      getData(
        path: string,
        watcher: Watcher,
        callback: (error: ZkException | null, data: Buffer | null | undefined, stat: Stat) => void,
      ): void;
      exists(path: string, callback: (error: ZkException | null, stat: Stat | null) => void): void;
      exists(
        path: string,
        watcher: Watcher,
        callback: (error: ZkException | null, stat: Stat | null) => void,
      ): void;
      getChildren(
        path: string,
        callback: (error: ZkException | null, children: string[], stat: Stat) => void,
      ): void;
      getChildren(
        path: string,
        watcher: Watcher,
        callback: (error: ZkException | null, children: string[], stat: Stat) => void,
      ): void;
    }

    function createClient(connectionString: string, options?: ClientOptions): Client;

    const CreateMode: {
      readonly PERSISTENT: 0;
      readonly EPHEMERAL: 1;
      readonly PERSISTENT_SEQUENTIAL: 2;
      readonly EPHEMERAL_SEQUENTIAL: 3;
    };

    const State: {
      readonly DISCONNECTED: ClientState;
      readonly SYNC_CONNECTED: ClientState;
      readonly AUTH_FAILED: ClientState;
      readonly CONNECTED_READ_ONLY: ClientState;
      readonly SASL_AUTHENTICATED: ClientState;
      readonly EXPIRED: ClientState;
    };

    const Event: {
      readonly NODE_CREATED: 1;
      readonly NODE_DELETED: 2;
      readonly NODE_DATA_CHANGED: 3;
      readonly NODE_CHILDREN_CHANGED: 4;
    };

    const Exception: {
      readonly OK: 0;
      readonly SYSTEM_ERROR: -1;
      readonly CONNECTION_LOSS: -4;
      readonly OPERATION_TIMEOUT: -7;
      readonly NO_NODE: -101;
      readonly NO_AUTH: -102;
      readonly BAD_VERSION: -103;
      readonly NO_CHILDREN_FOR_EPHEMERALS: -108;
      readonly NODE_EXISTS: -110;
      readonly NOT_EMPTY: -111;
      readonly SESSION_EXPIRED: -112;
      create(code: number, path?: string): ZkException;
    };
  }

  export = zookeeper;
}
