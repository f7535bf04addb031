FROM scratch
COPY --from=nowhere /a /a
FROMM x
