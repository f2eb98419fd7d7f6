# kiteq-pg broker image (used by compose.yaml). Build: docker build -t kiteq-pg .
# Run: docker run kiteq-pg serve --db postgres://... --registry zk://host:2181 --topics a,b
# Without --db the node would start an embedded PostgreSQL; this image is meant for an external one.

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
# Read at run time beside dist/: migrations applied on start, the protocol's .proto schema.
COPY migrations ./migrations
COPY proto ./proto
USER node
EXPOSE 13800
# V8 heap flags: see src/server/node-flags.ts (fewer major GCs, lower tail latency).
ENTRYPOINT ["node", "--initial-old-space-size=128", "--max-semi-space-size=32", "dist/cli/main.js"]
CMD ["serve", "--bind", "0.0.0.0:13800"]
