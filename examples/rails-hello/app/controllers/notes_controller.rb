# frozen_string_literal: true

# ActiveRecord on SQLite: an index (HTML or JSON) and a form with CSRF.
class NotesController < ApplicationController
  def index
    @notes = Note.order(:id).limit(20)
    respond_to do |format|
      format.html
      format.json { render json: @notes.map { |note| note.slice(:id, :title) } }
    end
  end

  def new
    @note = Note.new
  end

  def create
    @note = Note.new(params.require(:note).permit(:title))
    if @note.save
      redirect_to notes_path
    else
      render :new, status: :unprocessable_entity
    end
  end
end
