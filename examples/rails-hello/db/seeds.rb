# frozen_string_literal: true

# Ten notes, so the index has rows to render.
10.times { |i| Note.create!(title: "Note #{i + 1}") } if Note.none?
