FROM golang:1.26 as build
ARG INFURA_PROJECT_SECRET
WORKDIR /src
COPY . .
RUN go build -o /out/infura-gateway .

FROM alpine:3.20
COPY --from=build /out/infura-gateway /usr/local/bin/infura-gateway
RUN apk add --no-cache curl
USER nonroot
ENTRYPOINT /usr/local/bin/infura-gateway
