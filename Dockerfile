# kiteq-pg broker image (used by compose.yaml). Build: docker build -t kiteq-pg .
# Run: docker run kiteq-pg serve --db postgres://... --registry zk://host:2181 --topics a,b
# Without --db the node would start an embedded PostgreSQL; this image is meant for an external one.
# The admin HTTP (/metrics, /messages/:id) listens on 127.0.0.1:13801 inside the container by
# default. To reach it from outside, it must listen on 0.0.0.0 and then needs a token:
#   docker run -e KITEQ_ADMIN_TOKEN=$(openssl rand -hex 24) -p 13801:13801 kiteq-pg \
#     serve --bind 0.0.0.0:13800 --admin 0.0.0.0:13801 --db postgres://...
# (without the token a non-loopback admin address refuses to start; /healthz stays open).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the embedded PostgreSQL binaries and tsx/esbuild are not used at run time.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# Read at run time beside dist/: migrations applied on start, the protocol's .proto schema, the
# admin console's static files.
COPY migrations ./migrations
COPY proto ./proto
COPY src/admin/console ./src/admin/console
USER node
EXPOSE 13800
# V8 heap flags: see src/server/node-flags.ts (fewer major GCs, lower tail latency).
ENTRYPOINT ["node", "--initial-old-space-size=256", "--max-semi-space-size=128", "dist/cli/main.js"]
# The admin server stays on the container's loopback (its default) unless KITEQ_ADMIN_TOKEN and
# --admin / KITEQ_ADMIN say otherwise.
CMD ["serve", "--bind", "0.0.0.0:13800"]
