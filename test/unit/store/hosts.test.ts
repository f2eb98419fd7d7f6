import { parse } from "pg-connection-string";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import { redactUrl } from "../../../src/config/values.js";
import {
  ConnectionTargetError,
  type HostAddress,
  parseConnectionTarget,
  qualifies,
  type ServerState,
  selectHost,
  TARGET_SESSION_ATTRS,
} from "../../../src/store/hosts.js";

const primary: ServerState = { inRecovery: false, readOnly: false };
const standby: ServerState = { inRecovery: true, readOnly: true };
const readOnlyPrimary: ServerState = { inRecovery: false, readOnly: true };

describe("parseConnectionTarget", () => {
  it("keeps a plain single-host URL as it is (pg connects directly)", () => {
    const t = parseConnectionTarget("postgres://u:p%40ss@db.internal:5432/kiteq?sslmode=disable");
    expect(t.hosts).toEqual([{ host: "db.internal", port: 5432 }]);
    expect(t.targetSessionAttrs).toBe("any");
    expect(t.direct).toBe(true);
    expect(t.hostUrls).toEqual(["postgres://u:p%40ss@db.internal:5432/kiteq?sslmode=disable"]);
  });

  it("reads several hosts before the path, each with its port, and target_session_attrs", () => {
    const t = parseConnectionTarget(
      "postgresql://user:pw@hostA:5432,hostB:5433/db?target_session_attrs=read-write&connect_timeout=3",
    );
    expect(t.hosts).toEqual([
      { host: "hostA", port: 5432 },
      { host: "hostB", port: 5433 },
    ]);
    expect(t.targetSessionAttrs).toBe("read-write");
    expect(t.direct).toBe(false);
    expect(t.hostUrls).toEqual([
      "postgresql://user:pw@hostA:5432/db?connect_timeout=3",
      "postgresql://user:pw@hostB:5433/db?connect_timeout=3",
    ]);
  });

  it("gives pg strings it reads as one host each, with user, password, database and options", () => {
    const t = parseConnectionTarget("postgresql://us%20er:p%2Fw@[::1]:5432,127.0.0.1/kiteq?sslmode=disable");
    expect(t.hosts).toEqual([
      { host: "::1", port: 5432 },
      { host: "127.0.0.1", port: null },
    ]);
    expect(t.hostUrls.map((u) => parse(u))).toMatchObject([
      { host: "::1", port: "5432", user: "us er", password: "p/w", database: "kiteq", ssl: false },
      { host: "127.0.0.1", user: "us er", password: "p/w", database: "kiteq", ssl: false },
    ]);
  });

  it("reads the query-parameter form: host=a,b&port=p1,p2, or one port for all", () => {
    const t = parseConnectionTarget("postgresql:///db?host=a,b&port=5432,5433&target_session_attrs=primary");
    expect(t.hosts).toEqual([
      { host: "a", port: 5432 },
      { host: "b", port: 5433 },
    ]);
    expect(t.targetSessionAttrs).toBe("primary");
    expect(t.hostUrls).toEqual(["postgresql://a:5432/db", "postgresql://b:5433/db"]);
    expect(parseConnectionTarget("postgresql:///db?host=a,b,c&port=6000").hosts.map((h) => h.port)).toEqual([
      6000, 6000, 6000,
    ]);
  });

  it("passes a Unix socket directory to pg as ?host=", () => {
    const t = parseConnectionTarget(
      "postgres://postgres:pw@%2Fvar%2Frun%2Fpostgresql:5433,10.0.0.2:5432/kiteq",
    );
    expect(t.hosts[0]).toEqual({ host: "/var/run/postgresql", port: 5433 });
    expect(parse(t.hostUrls[0] as string)).toMatchObject({
      host: "/var/run/postgresql",
      port: "5433",
      user: "postgres",
      password: "pw",
      database: "kiteq",
    });
  });

  it("reads libpq's keyword=value form, quoted values included", () => {
    const k = parseConnectionTarget(
      "host=a,b port=5432,5433 dbname=kiteq user=kq password='a \\'b\\' c' target_session_attrs=read-write",
    );
    expect(k.hosts).toEqual([
      { host: "a", port: 5432 },
      { host: "b", port: 5433 },
    ]);
    expect(k.targetSessionAttrs).toBe("read-write");
    expect(parse(k.hostUrls[1] as string)).toMatchObject({
      host: "b",
      port: "5433",
      user: "kq",
      password: "a 'b' c",
      database: "kiteq",
    });
  });

  it.each([
    ["postgresql://u@a,,b/db", "empty host"],
    ["postgresql://u@a,b:0/db", 'bad port "0"'],
    ["postgresql://u@a:70000/db", 'bad port "70000"'],
    ["postgresql://u@a:x/db", 'bad port "x"'],
    ["postgresql://u@a,b/db?target_session_attrs=readwrite", 'unknown target_session_attrs "readwrite"'],
    ["postgresql:///db?host=a,b,c&port=1,2", "3 hosts but 2 ports"],
    ["postgresql://a:1,b/db?port=5432", "ports given both"],
    ["postgresql://a/db?host=b", "hosts given both"],
    ["postgresql://u@[::1/db", "no closing ']'"],
    ["postgresql://u@bad host/db", "bad host"],
    ["mysql://u@h/db", "postgres://"],
    ["just words", "postgresql:// URL or keyword=value"],
    ["host=a port", "bad keyword=value pair"],
  ])("refuses %j with one line saying why", (url, part) => {
    let error: unknown;
    try {
      parseConnectionTarget(url);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConnectionTargetError);
    const message = (error as Error).message;
    expect(message).toContain(part);
    expect(message).not.toContain("\n");
  });

  it("lists every libpq target_session_attrs value", () => {
    expect(TARGET_SESSION_ATTRS).toEqual([
      "any",
      "read-write",
      "read-only",
      "primary",
      "standby",
      "prefer-standby",
    ]);
  });
});

describe("qualifies", () => {
  it.each([
    ["any", [true, true, true]],
    ["read-write", [true, false, false]],
    ["read-only", [false, true, true]],
    ["primary", [true, false, true]],
    ["standby", [false, true, false]],
    ["prefer-standby", [false, true, false]],
  ] as const)("%s: primary, standby, read-only primary", (attrs, expected) => {
    expect([primary, standby, readOnlyPrimary].map((s) => qualifies(attrs, s))).toEqual(expected);
  });
});

describe("selectHost", () => {
  const hosts: HostAddress[] = [
    { host: "a", port: 5432 },
    { host: "b", port: 5433 },
    { host: "c", port: 5434 },
  ];
  const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:5432"), { code: "ECONNREFUSED" });
  const probeWith =
    (states: (ServerState | Error)[], probed: number[] = []) =>
    async (_h: HostAddress, i: number) => {
      probed.push(i);
      const s = states[i];
      if (s instanceof Error) throw s;
      return s as ServerState;
    };

  it("takes the first host in order whose server qualifies, and probes no further", async () => {
    const probed: number[] = [];
    const chosen = await selectHost(
      { hosts, targetSessionAttrs: "read-write" },
      probeWith([standby, primary, primary], probed),
    );
    expect(chosen).toEqual({ index: 1, state: primary });
    expect(probed).toEqual([0, 1]);
  });

  it("passes over hosts that refuse connections (the old primary is down)", async () => {
    const chosen = await selectHost(
      { hosts, targetSessionAttrs: "read-write" },
      probeWith([refused, refused, primary]),
    );
    expect(chosen.index).toBe(2);
  });

  it("names every host and why it was passed over when none qualifies", async () => {
    await expect(
      selectHost({ hosts, targetSessionAttrs: "read-write" }, probeWith([refused, standby, readOnlyPrimary])),
    ).rejects.toThrow(
      "no server with target_session_attrs=read-write among a:5432 (connect ECONNREFUSED 10.0.0.1:5432), " +
        "b:5433 (a standby (in recovery)), c:5434 (a primary in read-only mode)",
    );
  });

  it("prefer-standby: a standby first, else the first reachable server", async () => {
    const t = { hosts, targetSessionAttrs: "prefer-standby" } as const;
    expect((await selectHost(t, probeWith([primary, standby, primary]))).index).toBe(1);
    expect((await selectHost(t, probeWith([refused, primary, primary]))).index).toBe(1);
    await expect(selectHost(t, probeWith([refused, refused, refused]))).rejects.toThrow(
      ConnectionTargetError,
    );
  });

  it("any: the first reachable server", async () => {
    expect(
      (await selectHost({ hosts, targetSessionAttrs: "any" }, probeWith([refused, standby, primary]))).index,
    ).toBe(1);
  });
});

describe("--db with several hosts", () => {
  it("accepts libpq's multi-host forms", () => {
    for (const url of [
      "postgresql://kq:pw@10.0.0.1:5432,10.0.0.2:5432/kiteq?target_session_attrs=read-write",
      "postgresql:///kiteq?host=a,b&port=5432&target_session_attrs=primary",
      "host=a,b dbname=kiteq target_session_attrs=read-write",
    ]) {
      expect(loadConfig(["--db", url], {}).config.databaseUrl).toBe(url);
    }
  });

  it("refuses a malformed one with one line naming the flag and the fault, password hidden", () => {
    expect(() => loadConfig(["--db", "postgresql://kq:secret@a,b:99999/kiteq"], {})).toThrow(
      /^invalid value for --db: "postgresql:\/\/kq:\*\*\*@a,b:99999\/kiteq" \(expected a postgres:\/\/ or postgresql:\/\/ URL: bad port "99999"/,
    );
    try {
      loadConfig(["--db", "postgresql://kq:secret@a,b/kiteq?target_session_attrs=master"], {});
    } catch (err) {
      const message = (err as Error).message;
      expect(message).toContain('unknown target_session_attrs "master"');
      expect(message).not.toContain("secret");
      expect(message).not.toContain("\n");
    }
  });

  it("redacts the password of the keyword form too", () => {
    expect(redactUrl("host=a,b password='x y' dbname=k")).toBe("host=a,b password=*** dbname=k");
    expect(redactUrl("postgresql://u:pw@a:1,b:2/db")).toBe("postgresql://u:***@a:1,b:2/db");
  });
});
